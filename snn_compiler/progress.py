"""Progress bars for the steps that can take more than a few seconds (tqdm when installed and asked for)."""
from __future__ import annotations

import sys


class _Null:
    def update(self, n=1):
        pass

    def close(self):
        pass


def wanted(progress) -> bool:
    """Whether to draw a bar: ``None`` (the Python API's default) draws one when stderr is a
    terminal, so a script's run shows it and a log, a pipe or a test stays clean; True or False
    decide. Anything else is refused: ``progress="no"`` must not quietly mean yes."""
    if progress is None:
        isatty = getattr(sys.stderr, "isatty", None)
        return bool(isatty is not None and isatty())
    if not isinstance(progress, bool):
        raise ValueError(f"progress must be True, False or None (a bar when stderr is a terminal), got {progress!r}")
    return progress


def bar(total: int, desc: str, unit: str = "sample", enabled: bool = True):
    """A tqdm bar on stderr that disappears when done, or a do-nothing stand-in (no tqdm, or not enabled)."""
    if not enabled:
        return _Null()
    try:
        from tqdm import tqdm
    except ImportError:  # the core works without tqdm
        return _Null()
    return tqdm(total=total, unit=unit, desc=desc, leave=False)
