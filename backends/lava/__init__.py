"""The Lava backend: compiled snnc networks as Lava process graphs, spike for spike with the reference.

Called from the main environment, :func:`run` ships the graph and the data to a worker in the
Lava environment (``.venv-lava``: Python 3.10, lava-nc 0.10.0), a subprocess in its own process
group under a timeout; on timeout or error the whole group is killed and :class:`LavaError`
raised: never a hang, never an orphan. :data:`TARGET` (``--target lava``) checks every register
against Loihi 2's widths. The process graph itself comes from
:func:`snn_compiler.backends.lava.build.build_network` (Lava environment only).
"""
from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from . import environment
from .plan import make_plan
from .shm import shm_names, unlink_shared_memory
from .target import TARGET, check, prepare  # noqa: F401

WORKER = "snn_compiler.backends.lava.worker"


class LavaError(RuntimeError):
    """The Lava run failed or timed out; its process group (``pgid``) has been killed and its
    shared-memory segments (``shm``, names in /dev/shm) unlinked. The message is one line (what
    failed, what to do); the worker's log (its tail) is in ``log``."""

    def __init__(self, message, pgid=None, log="", shm=()):
        super().__init__(message)
        self.pgid, self.log, self.shm = pgid, log, list(shm)


def lava_python() -> str:
    """The Lava environment's interpreter (where it is looked for: :mod:`.environment`)."""
    python, looked = environment.find_python()
    if python is None:
        raise LavaError(f"the Lava backend needs its Python 3.10 environment with lava-nc 0.10.0 (none at "
                        f"{'; '.join(looked)}): {environment.HOW}")
    return python


def available() -> bool:
    try:
        lava_python()
        return True
    except LavaError:
        return False


def group_members(pgid: int) -> list:
    """Live (non-zombie) processes of process group ``pgid`` (Linux /proc; [] elsewhere)."""
    found = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(d.name))
    return found


def kill_group(pgid: int, wait: float = 5.0) -> None:
    """SIGKILL every process of group ``pgid`` and wait (up to ``wait`` s) until none is left."""
    deadline = time.monotonic() + wait
    while True:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except PermissionError:  # the group id was reused by someone else's processes
            return
        if not group_members(pgid) or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _tail(path, n=4000) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError:
        return ""
    return data[-n:].decode("utf-8", "replace")


# ---- how long a run may take ----------------------------------------------------------------------
# Measured on 2 shared cores (lava-nc 0.10.0, fixed_pt): ~0.4 ms per process and hardware step,
# ~1 ms more per Conv, ~20 ns per Conv multiply-accumulate, ~2 ns per Dense/Sparse weight; Var.get
# reads ~50k values/s. The 784-256-128-10 MLP ran at 3 ms per step, the MNIST CNN at 20 ms.
STEP_S_PER_PROCESS = 5e-4
STEP_S_PER_CONV = 1e-3
STEP_S_PER_CONV_MAC = 2e-8
STEP_S_PER_WEIGHT = 2e-9
READ_VALUES_PER_S = 5e4
START_S = 120.0                  # start-up allowance: import Lava, build and compile the graph (2-5 s measured)
TIMEOUT_MARGIN = 10.0            # default timeout = START_S + TIMEOUT_MARGIN x the expected time ...
MAX_LAVA_TIMEOUT = 6 * 3600.0    # ... capped at 6 h; run(timeout=SECONDS) (snnc simulate --timeout) raises it


def step_seconds(plan, timesteps: int, neurons: str = "auto") -> float:
    """Expected seconds per hardware step of ``plan``'s process graph (the measured rates above)."""
    from .plan import lif_fit
    lif = sum(1 for n in plan.layers if neurons != "snnc" and lif_fit(plan, n, timesteps) is None)
    # source, one process per layer (a stock LIF layer: 3 more), synapses, delays
    procs = 1 + len(plan.layers) + 3 * lif + len(plan.conns) + len({(c.src, c.delay, c.steps) for c in plan.conns if c.delay or c.steps})
    s = procs * STEP_S_PER_PROCESS
    for c in plan.conns:
        if c.kind == "conv":
            s += STEP_S_PER_CONV + STEP_S_PER_CONV_MAC * int(np.prod(plan.layers[c.dst].lshape)) * int(c.weight[0].size)
        elif c.kind == "sparse":
            s += STEP_S_PER_WEIGHT * c.weight.nnz
        else:
            s += STEP_S_PER_WEIGHT * int(np.size(c.weight))
    return s


def expected_seconds(plan, n_samples: int, timesteps: int, record: bool = False, neurons: str = "auto",
                     record_steps=()) -> float:
    """Expected run time (no start-up): N*T + depth hardware steps, then the read-out (each
    recorded step of the ``record_steps`` layers is read too)."""
    steps = n_samples * timesteps + plan.depth
    read = n_samples * sum(int(np.prod(lp.lshape)) for n, lp in plan.layers.items() if record or n == plan.output)
    read += n_samples * timesteps * sum(int(np.prod(plan.layers[n].lshape)) for n in record_steps)
    return steps * step_seconds(plan, timesteps, neurons) + 2 * read / READ_VALUES_PER_S


def default_timeout(plan, n_samples: int, timesteps: int, record: bool = False, neurons: str = "auto",
                    record_steps=()) -> float:
    """START_S + TIMEOUT_MARGIN x the expected time, at most MAX_LAVA_TIMEOUT (seconds)."""
    return min(MAX_LAVA_TIMEOUT,
               START_S + TIMEOUT_MARGIN * expected_seconds(plan, n_samples, timesteps, record, neurons, record_steps))


def _duration(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min" if s >= 60 else f"{s:.0f} s"


def _last_error(log: str) -> str:
    """The worker log's last exception line (or last line), for a one-line message."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b", ln):
            return ln[:400]
    return lines[-1][:400] if lines else "no output"


def run_worker(job: str, timeout: float, progress: bool = False, total: int = 0, python: str = None,
               advice: str = "pass a larger timeout") -> dict:
    """Run the worker on ``job``; returns result.npz's arrays. Whatever happens (success, error,
    timeout, interrupt) its process group is killed and its /dev/shm segments unlinked after.
    Failures raise LavaError with a one-line message (``advice`` ends a timeout's); the worker's
    log (tail) is in its ``log`` attribute."""
    python = lava_python() if python is None else python
    log_path = os.path.join(job, "worker.log")
    bar = _bar(total, progress)
    with open(log_path, "wb") as log:
        # cwd=job: `python -m` puts the working directory first on sys.path, where a checkout's
        # snn_compiler/ would shadow the environment's own snnc
        proc = subprocess.Popen([python, "-m", WORKER, job], stdin=subprocess.DEVNULL, stdout=log, cwd=job,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    pgid = proc.pid  # a new session: the worker leads its own process group
    rc, shown, timed_out = None, 0, False
    try:
        deadline = time.monotonic() + timeout
        while rc is None and not timed_out:
            try:
                rc = proc.wait(timeout=0.25)
            except subprocess.TimeoutExpired:
                timed_out = time.monotonic() > deadline
            shown = _update(bar, job, shown)
    finally:
        kill_group(pgid)  # on error, timeout or interrupt; after success: any Lava child the worker left
        if rc is None:
            proc.wait()
        shm = shm_names(job)
        unlink_shared_memory(job)  # /dev/shm segments of a killed run (a clean run removed its own)
        bar.close()
    log = _tail(log_path)
    if timed_out:
        took = f"{timeout:.0f}" if timeout >= 10 else f"{timeout:g}"
        raise LavaError(f"Lava run timed out after {took} s and its process group {pgid} was killed; "
                        f"{advice}", pgid, log, shm)
    result = os.path.join(job, "result.npz")
    if rc != 0 or not os.path.exists(result):
        fault = _tail(os.path.join(job, "fault.txt"))
        if fault:
            lines = [ln.strip() for ln in fault.strip().splitlines() if ln.strip()]
            head = f"{lines[0]} {lines[-1]}" if len(lines) > 1 else lines[0]
            raise LavaError(f"{head} (the Lava run was stopped and its process group {pgid} killed; a bug in an "
                            "snnc Lava process model: report it with the worker log, LavaError.log)", pgid, log, shm)
        if "No module named 'lava'" in log or "No module named 'snn_compiler'" in log:
            raise LavaError(f"Lava worker failed: {python} lacks lava-nc 0.10.0 or snnc: {environment.HOW}",
                            pgid, log, shm)
        if rc is not None and rc < 0:
            name = signal.Signals(-rc).name if -rc in signal.valid_signals() else str(-rc)
            why = " (out of memory? run fewer samples at once)" if -rc == signal.SIGKILL else ""
            raise LavaError(f"Lava worker was killed by {name}{why}; its process group {pgid} was killed too",
                            pgid, log, shm)
        raise LavaError(f"Lava worker failed (exit status {rc}): {_last_error(log)}; its process group {pgid} "
                        "was killed (worker log in LavaError.log)", pgid, log, shm)
    with np.load(result, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _bar(total, enabled):
    if enabled and total:
        try:
            from tqdm import tqdm
            return tqdm(total=total, unit="sample", desc="lava", leave=False)
        except ImportError:
            pass

    class _Null:
        n = 0
        def update(self, n): pass
        def close(self): pass
    return _Null()


def _update(bar, job, shown):
    try:
        done = int(Path(job, "progress").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return shown
    if done > shown:
        bar.update(done - shown)
    return max(done, shown)


def run(graph, x, *, timesteps=None, encoding="constant", seed=0, readout="membrane", k=None, batch_size=256,
        progress=False, record=False, timeout=None, fault=None, neurons="auto", info=None, record_steps=None):
    """Run ``graph`` on Lava's bit-accurate fixed-point simulator; returns the reference's SimResult.

    ``readout`` first-spike / k-spikes (``k``): the Output process records each sample's decision
    step and its state there, so predictions, scores, ``decision_time`` and ``tied`` equal the
    reference's; but Lava does not stop a decided sample (every window runs its T steps, as the
    reference does with ``record=True``), so ``rates`` and counts cover whole windows.

    All samples stream through one Lava run (per-layer window resets); ``batch_size`` is accepted
    for interface compatibility. ``timesteps``: 1..MAX_TIMESTEPS; ``x`` (N, *input shape), or a
    sequence (N, T, *input shape) whose T the run takes (``timesteps`` None or T; the reference's
    rule, :func:`snn_compiler.sim.encode.run_timesteps`). ``timeout`` (s) bounds the whole
    worker; by default :func:`default_timeout` (START_S + TIMEOUT_MARGIN x the expected time, which
    grows with samples x timesteps x network size; at most MAX_LAVA_TIMEOUT), and a run expected
    to take longer than MAX_LAVA_TIMEOUT is refused unless ``timeout`` is given (raising the cap).
    Failures raise :class:`LavaError` with a one-line message (the worker's log in ``.log``).
    ``fault=(layer, hardware_step)`` makes a neuron process raise (tests only).
    ``neurons``: "auto" (stock LIF for reset-to-zero layers where exact), "snnc" or "lif".
    ``info``, a dict, receives facts about the run: per-layer neuron kind, timings (s).
    ``record_steps``: neuron layers whose every step is returned in ``SimResult.steps`` as the
    reference returns them ((N, T, neurons) spikes; a membrane read-out's layer: its membrane).
    ``membrane-sum`` / ``membrane-max``: Lava runs the membrane read-out and records the read-out's
    membrane every step; the host folds it over T with the reference's own rule (``fold_membrane``).
    """
    from snn_compiler.sim.readout import OVER_TIME
    if readout in OVER_TIME:
        from .over_time import folded
        return folded(graph, x, readout, k, record_steps, dict(
            timesteps=timesteps, encoding=encoding, seed=seed, batch_size=batch_size, progress=progress,
            record=record, timeout=timeout, fault=fault, neurons=neurons, info=info))
    from snn_compiler import artifact
    from snn_compiler.passes.compose_pools import without_pools
    from snn_compiler.sim.emulator import SimResult
    from snn_compiler.sim.readout import check_readout
    from snn_compiler.sim.encode import ENCODINGS, check_gain, check_timesteps, run_timesteps

    if timesteps is not None:
        check_timesteps(timesteps)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float, np.number))
                                or not math.isfinite(timeout) or timeout <= 0):
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    graph = without_pools(graph)  # composed once here rather than again in the worker

    K = check_readout(readout, k)
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    check_gain(graph, encoding)
    check_graph(graph)
    plan = make_plan(graph, readout)
    x = np.asarray(x)
    timesteps = run_timesteps(plan.input_shape, x, timesteps, encoding)
    if record_steps is not None:
        from snn_compiler.sim.readout import check_record_steps
        record_steps = list(check_record_steps(graph, record_steps, readout, len(x), timesteps))
    out_shape = plan.layers[plan.output].shape
    if len(x) == 0:
        return SimResult(scores=np.zeros((0,) + out_shape), predictions=np.zeros(0, np.int64), rates={},
                         counts={} if record else None, decision_time=np.zeros(0, np.int64) if K else None,
                         tied=np.zeros(0, bool) if K else None,
                         steps=None if record_steps is None else {
                             n: np.zeros((0, timesteps, int(np.prod(plan.layers[n].shape))),
                                         np.uint8 if plan.layers[n].spiking else np.int64) for n in record_steps})
    if timeout is None:
        rec_steps = () if record_steps is None else record_steps
        expected = expected_seconds(plan, len(x), timesteps, record, neurons, rec_steps)
        if expected > MAX_LAVA_TIMEOUT:
            raise ValueError(f"this Lava run would take about {_duration(expected)} ({len(x)} samples x {timesteps} "
                             f"timesteps), over the {_duration(MAX_LAVA_TIMEOUT)} cap (MAX_LAVA_TIMEOUT): pass "
                             "timeout=SECONDS (snnc simulate --timeout) to allow it, or run fewer samples or timesteps")
        timeout = default_timeout(plan, len(x), timesteps, record, neurons, rec_steps)
        advice = (f"that is the {_duration(MAX_LAVA_TIMEOUT)} cap (MAX_LAVA_TIMEOUT)" if timeout >= MAX_LAVA_TIMEOUT
                  else "that is the default for this run's size") + \
            "; pass timeout=SECONDS (snnc simulate --timeout) to allow longer"
    else:
        advice = "pass a larger timeout (snnc simulate --timeout SECONDS) if the run needs longer"
    python = lava_python()
    params = dict(timesteps=int(timesteps), encoding=encoding, seed=int(seed), readout=readout, k=K,
                  record=bool(record), progress=bool(progress), chunk_samples=max(1, len(x) // 100),
                  fault=list(fault) if fault else None, neurons=neurons, parent_pid=os.getpid(),
                  record_steps=[] if record_steps is None else record_steps)
    with tempfile.TemporaryDirectory(prefix="snnc-lava-") as job:
        artifact.save(graph, os.path.join(job, "graph.snnc"))
        np.save(os.path.join(job, "x.npy"), x, allow_pickle=False)
        with open(os.path.join(job, "params.json"), "w") as f:
            json.dump(params, f)
        res = run_worker(job, timeout, progress, len(x), python, advice)
    if info is not None:
        info["kinds"] = dict(zip((str(s) for s in res["layers"]), (str(k) for k in res["kinds"])))
        info.update(zip(("build_s", "run_s", "read_s", "hardware_steps"), (float(v) for v in res["timing"])))
    result = to_simresult(res, plan, len(x), timesteps, readout, record, K)
    if record_steps is not None:
        i = {n: j for j, n in enumerate(str(s) for s in res["layers"])}
        result.steps = {n: res[f"steps/{i[n]}"].astype(np.uint8 if plan.layers[n].spiking else np.int64)
                        for n in record_steps}
    return result


def check_graph(graph, profile=None) -> None:
    """Refuse (TargetError naming layer and register) a graph Lava would not run exactly (checked
    against ``profile``, default loihi2: the registers of the Lava simulator that runs it, whatever
    the graph records). A graph compiled for another target (the reference one: wider weights, any
    bias) is refused saying so and how to recompile, not only by the register it breaks."""
    from snn_compiler.config import CompileConfig
    from snn_compiler.targets import TargetError
    try:
        check(graph, CompileConfig(target="lava", profile=profile))
    except TargetError as e:
        target = graph.graph.get("snnc", {}).get("target")
        if target in (None, "lava"):
            raise
        raise TargetError(f"the artifact was compiled for target {target!r}, not lava, and Loihi cannot run it "
                          f"exactly ({e}); recompile the model with --target lava (snnc compile MODEL --target lava "
                          f"-o NET.snnc)") from None


def to_simresult(res, plan, n, timesteps, readout, record, k=None):
    """The reference's SimResult from the worker's arrays (same scores, predictions, rates, counts;
    for latency read-outs the same decisions, through the reference's own rule)."""
    from snn_compiler.sim.emulator import SimResult
    from snn_compiler.sim.readout import readout_decisions

    counts_out, v = res["output_counts"], res["output_membrane"]
    decision_time = tied = None
    if k:
        step = res["decision_step"].astype(np.int64)
        decided = (step >= 0).reshape((-1,) + (1,) * (counts_out.ndim - 1))
        at_stop = np.where(decided, res["decision_counts"], counts_out)   # the reference's view where it stops
        membrane = np.where(decided, res["decision_membrane"], v)
        preds, tied, decision_time = readout_decisions(at_stop, membrane, step, k)
        scores = at_stop.astype(np.float64)
    elif readout == "membrane":
        scores, preds = v.astype(np.float64), np.argmax(v, axis=1)
    else:
        scores, preds = counts_out.astype(np.float64), np.lexsort((v, counts_out))[:, -1]
    layers = [str(s) for s in res["layers"]]
    rates, counts = {}, {} if record else None
    for i, layer in enumerate(layers):
        if f"total/{i}" not in res:
            continue
        size = int(np.prod(plan.layers[layer].shape))
        rates[layer] = int(res[f"total/{i}"]) / (n * timesteps * size)
        if record:
            counts[layer] = res[f"counts/{i}"].astype(np.int64)
    return SimResult(scores=scores, predictions=preds.astype(np.int64), rates=rates, counts=counts,
                     decision_time=decision_time, tied=tied)


__all__ = ["run", "TARGET", "LavaError", "lava_python", "available", "kill_group", "group_members",
           "default_timeout", "expected_seconds", "MAX_LAVA_TIMEOUT"]
