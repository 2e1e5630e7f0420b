"""Array work in blocks of rows on several threads: the passes' weight arithmetic, the plans' digest.

numpy runs one thread, while the calibration's forward pass in torch runs on all it is given; on
VGG-11 (9 M weights) the passes' weight arithmetic was a third of a compile at 2 threads. A block of
rows gets the very same numpy operations as the whole array would (element-wise, or per row), so
the result does not depend on the threads; numpy lets go of the GIL inside its loops, so the blocks
run side by side (as hashlib does on big buffers: sim/prepared.py's digest of the weights).
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

MIN_ELEMENTS = 1 << 20  # below this, one block: a thread's start costs more than it saves


def compile_threads() -> int:
    """The threads a compile may use: torch's count where torch is loaded (the calibration's forward
    runs on it; ``torch.set_num_threads`` is how a user or a benchmark sets it), else numba's, else
    the CPUs this process may run on."""
    for name in ("torch", "numba"):  # (a module blocked from import sits in sys.modules as None)
        count = getattr(sys.modules.get(name), "get_num_threads", None)
        if count is not None:
            return max(1, int(count()))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def for_row_blocks(block, rows: int, elements: int, threads: int | None = None) -> None:
    """Call ``block(lo, hi)`` on contiguous row ranges covering ``0..rows``: one range when the array
    is small (``elements`` in all) or one thread is allowed, else one per thread, run in parallel.
    ``block`` writes its rows' results into arrays the caller made; an exception in any block is
    raised here."""
    threads = compile_threads() if threads is None else threads
    n = min(threads, rows) if elements >= MIN_ELEMENTS else 1
    if n <= 1:
        block(0, rows)
        return
    cuts = [rows * i // n for i in range(n + 1)]
    with ThreadPoolExecutor(n) as pool:
        for f in [pool.submit(block, lo, hi) for lo, hi in zip(cuts, cuts[1:])]:
            f.result()
