"""``snnc sweep``: a grid of runs over one model (or artifact) and one data set, as one table.

Compile parameters (bits, norm) are compiled once per distinct setting, by the same code as
``snnc compile``, into OUTDIR/artifacts/; run parameters (timesteps, encoding, seed, readout)
reuse that artifact. Every finished row is appended to OUTDIR/sweep.csv and flushed at once, so a
killed sweep loses at most the rows that were running; a rerun skips every row already there
(same grid values, same inputs: the fingerprint is the sha256 of the input files). sweep.json (the
current grid's rows) and accuracy.png are written at the end, atomically (snn_compiler.outputs).
Rows run in a process pool with ``workers`` > 1; the integer simulator is deterministic and
Poisson input is keyed by seed and sample index, so rows do not depend on the pool.
"""
from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import sys
import time

COMPILE_KEYS = ("bits", "norm")
RUN_KEYS = ("timesteps", "encoding", "seed", "readout")
KEYS = COMPILE_KEYS + RUN_KEYS
READOUTS = ("membrane", "count", "first-spike")   # k-spikes needs a K per row: not a grid value yet
RESULTS = ("accuracy", "samples", "seconds", "sample_timesteps_per_s", "sops_per_inference")
COLUMNS = ("fingerprint",) + KEYS + RESULTS
TIMING = ("seconds", "sample_timesteps_per_s")   # the only columns that differ between two runs of a row


def _int_value(key, text, low, high):
    try:
        v = int(text)
    except ValueError:
        raise ValueError(f"--grid {key}: {text!r} is not a whole number") from None
    if not low <= v <= high:
        raise ValueError(f"--grid {key}: {v} is outside {low}..{high}")
    return str(v)


def _check_value(key, text):
    """The value as the table stores it (a string), or a one-line ValueError."""
    from .sim.encode import ENCODINGS, MAX_TIMESTEPS
    if key == "bits":
        return _int_value(key, text, 2, 16)
    if key == "timesteps":
        return _int_value(key, text, 1, MAX_TIMESTEPS)
    if key == "seed":
        return _int_value(key, text, 0, 2 ** 63 - 1)
    if key == "encoding" and text not in ENCODINGS:
        raise ValueError(f"--grid encoding: {text!r} is not one of {', '.join(ENCODINGS)}")
    if key == "readout" and text not in READOUTS:
        raise ValueError(f"--grid readout: {text!r} is not one of {', '.join(READOUTS)}")
    if key == "norm":
        from .config import parse_norm
        try:
            parse_norm(text)
        except ValueError as e:
            raise ValueError(f"--grid norm: {e}") from None
    return text


def parse_grid(items, artifact_input: bool) -> dict:
    """``["timesteps=8,16", "bits=4,8"]`` -> {key: [values]}; an unknown or repeated key, an empty
    or repeated value, or a compile key for an artifact is refused in one line."""
    grid = {}
    for item in items:
        key, eq, values = item.partition("=")
        key = key.strip()
        if not eq:
            raise ValueError(f"--grid {item!r}: expected KEY=V1,V2,... like timesteps=8,16,32")
        if key not in KEYS:
            raise ValueError(f"--grid {key!r}: unknown key; keys: {', '.join(KEYS)}")
        if key in grid:
            raise ValueError(f"--grid {key} is given twice; give all its values in one --grid {key}=V1,V2")
        if artifact_input and key in COMPILE_KEYS:
            raise ValueError(f"--grid {key}: the input is a compiled artifact, so only run parameters "
                             f"({', '.join(RUN_KEYS)}) can vary; give the model file to sweep {key}")
        parts = [v.strip() for v in values.split(",")]
        if not values.strip() or any(not v for v in parts):
            raise ValueError(f"--grid {key}: an empty value in {values!r}")
        checked = [_check_value(key, v) for v in parts]
        if len(set(checked)) != len(checked):
            raise ValueError(f"--grid {key}: a value is repeated in {values!r}")
        grid[key] = checked
    return grid


def fingerprint(paths) -> str:
    """sha256 over the input files' bytes (None for an absent optional input), 16 hex digits."""
    h = hashlib.sha256()
    for p in paths:
        h.update(b"\0" if p is None else b"\1")
        if p is not None:
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


def grid_rows(grid: dict, fixed: dict) -> list:
    """Every combination, as {key: value} for every key (fixed values where not gridded), T last
    varying fastest so one curve's points are neighbours."""
    values = [grid.get(k, [fixed[k]]) for k in KEYS]
    return [dict(zip(KEYS, combo)) for combo in itertools.product(*values)]


def row_key(fp, row) -> tuple:
    return (fp,) + tuple(str(row[k]) for k in KEYS)


def read_done(path) -> dict:
    """{row key: row} of OUTDIR/sweep.csv; a last line cut off by a kill is removed from the file."""
    if not os.path.exists(path):
        return {}
    with open(path, "rb") as f:
        data = f.read()
    if data and not data.endswith(b"\n"):   # the row being written when the sweep was killed
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
        data = data[:data.rfind(b"\n") + 1]
    lines = data.decode().splitlines()
    if not lines:
        return {}
    reader = csv.DictReader(lines)
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ValueError(f"{path}: not a sweep table of this snnc (columns {reader.fieldnames}); "
                         f"choose another -o directory")
    return {tuple(r[c] for c in ("fingerprint",) + KEYS): r for r in reader}


def append_row(path, row) -> None:
    """One finished row, flushed to disk before the next starts (the header first on a new file)."""
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        if new:
            w.writeheader()
        w.writerow({c: "" if row.get(c) is None else row[c] for c in COLUMNS})
        f.flush()
        os.fsync(f.fileno())


def compile_setting(model, calibration, input_shape, bits, norm, path) -> None:
    """``snnc compile MODEL --bits B [--norm N] -o PATH`` through the compile command itself."""
    from .cli import build_parser
    from .commands import cmd_compile
    argv = ["compile", model, "-o", path, "--no-progress"]
    if calibration:
        argv += ["--calibration", calibration]
    if input_shape:
        argv += ["--input-shape", ",".join(str(d) for d in input_shape)]
    if bits:
        argv += ["--bits", str(bits)]
    if norm:
        argv += ["--norm", norm]
    cmd_compile(build_parser().parse_args(argv))


_CACHE = {}   # per process: (artifact, data) -> (graph, data source); a worker loads each once


def _loaded(artifact_path, data_path):
    key = (artifact_path, data_path)
    if key not in _CACHE:
        from . import artifact
        from .ir import output_node
        from .runs import open_data_for
        q = artifact.load(artifact_path)
        src = open_data_for(q, data_path, n_outputs=q.nodes[output_node(q)]["shape"][0])
        _CACHE.clear()
        _CACHE[key] = (q, src)
    return _CACHE[key]


def run_row(artifact_path, data_path, row, batch_size, cluster=None) -> dict:
    """One run of the grid: the row with its results (accuracy as a fraction, like simulate's);
    on ``cluster`` (an open :class:`.distributed.Cluster`) its samples split across the workers."""
    import numpy as np

    from .report.energy import energy
    from .runs import Runner
    from .shards import events_per_inference
    q, src = _loaded(artifact_path, data_path)
    runner = Runner(q, src, "reference", batch_size=batch_size, cluster=cluster)
    T, seed = int(row["timesteps"]), int(row["seed"])
    opts = dict(encoding=row["encoding"], seed=seed, readout=row["readout"])
    runner.warm(opts)   # the numba kernels compile outside the timed run
    t0 = time.perf_counter()
    result, totals = runner.run(dict(opts, timesteps=T), totals=True)
    dt = time.perf_counter() - t0
    out = dict(row)
    out.update(accuracy=float((result.predictions == src.y).mean()), samples=src.n, seconds=round(dt, 4),
               sample_timesteps_per_s=round(src.n * T / max(dt, 1e-9), 1), sops_per_inference=None)
    if row["readout"] in ("membrane", "count"):   # whole windows: latency read-outs' stopped samples would skew it
        events = events_per_inference(q, totals, runner.input_events(T, row["encoding"], seed), src.n)
        out["sops_per_inference"] = round(float(energy(q, events)["sops"]), 3)
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in out.items()}


def _label(row, varying):
    return ", ".join(f"{k}={row[k]}" for k in varying) or "accuracy"


def accuracy_png(rows, grid) -> bytes:
    """Accuracy against T, one curve per combination of the other gridded keys."""
    from .plots import plot_accuracy
    varying = [k for k in KEYS if k != "timesteps" and len(grid.get(k, ())) > 1]
    ts = sorted({int(r["timesteps"]) for r in rows})
    curves = {}
    for r in rows:
        curves.setdefault(_label(r, varying), {})[int(r["timesteps"])] = 100.0 * float(r["accuracy"])
    return plot_accuracy(None, ts, {k: [c[t] for t in ts] for k, c in curves.items()}, title="snnc sweep: accuracy")


def sweep(model, data, outdir, grid, *, calibration=None, input_shape=None, workers=None, batch_size=256,
          plot=True, log=print, ray=None) -> dict:
    """Run every row of ``grid`` not yet in OUTDIR/sweep.csv; returns the summary (rows of this grid).
    ``workers``: processes running rows (None: 1); with ``ray`` (a cluster's address, local or
    auto) the rows run one after another, each split across ``workers`` Ray workers (None: all)."""
    from . import artifact
    from .outputs import PendingOutputs
    from .runs import check_ray_options
    if ray is not None:
        check_ray_options(ray, workers, "reference")
    else:
        workers = 1 if workers is None else workers
        if workers < 1:
            raise ValueError(f"--workers must be >= 1, got {workers}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    if not os.path.isdir(outdir):
        raise ValueError(f"-o {outdir}: not a directory (create it first)")
    is_artifact = _is_artifact(model)
    if is_artifact and (calibration or input_shape):
        raise ValueError(f"{model} is a compiled artifact: --calibration and --input-shape apply to a model file")
    outputs = PendingOutputs(inputs=[model, data, calibration])
    table = os.path.join(outdir, "sweep.csv")
    for name in ("sweep.json", "accuracy.png") if plot else ("sweep.json",):
        outputs.reserve(os.path.join(outdir, name))
    _check_labels(data)
    from .data_stream import data_files
    fp = fingerprint([model, *data_files(data), calibration])   # a streamed data set: each of its files
    if is_artifact:
        meta = artifact.load(model).graph["snnc"]
        fixed = {"bits": str(meta["bits"]), "norm": str(meta.get("norm") or ""), "timesteps": str(meta.get("timesteps", 32))}
    else:
        fixed = {"bits": "", "norm": "", "timesteps": "32"}   # snnc compile's defaults (bits: the target's)
    fixed.update(encoding="constant", seed="0", readout="membrane")
    rows = grid_rows(grid, fixed)
    done = read_done(table)
    todo = [r for r in rows if row_key(fp, r) not in done]
    log(f"sweep: {len(rows)} rows, {len(rows) - len(todo)} already in {table}, {len(todo)} to run")
    artifacts = {}
    for r in todo:
        setting = (r["bits"], r["norm"])
        if setting in artifacts:
            continue
        if is_artifact:
            artifacts[setting] = model
            continue
        os.makedirs(os.path.join(outdir, "artifacts"), exist_ok=True)
        tag = hashlib.sha256(f"{fp}|{setting}".encode()).hexdigest()[:12]
        path = os.path.join(outdir, "artifacts", f"bits{r['bits'] or 'default'}-{tag}.snnc")
        if not os.path.exists(path):   # committed whole by compile, so an existing one is complete
            compile_setting(model, calibration, input_shape, r["bits"], r["norm"], path)
        artifacts[setting] = path
    jobs = [(artifacts[(r["bits"], r["norm"])], data, r, batch_size) for r in todo]
    finished = 0
    cluster = None
    try:
        if ray is not None and jobs:
            from .distributed import Cluster
            cluster = Cluster(ray, workers).__enter__()
            log(f"sweep: on Ray ({ray}), {len(cluster.actors)} workers")
        for r in _run_all(jobs, workers, cluster):
            r["fingerprint"] = fp
            append_row(table, r)
            done[row_key(fp, r)] = r
            finished += 1
            log(f"  {_label(r, [k for k in KEYS if k in grid])}: accuracy {100 * r['accuracy']:.2f}% "
                f"({r['samples']} samples, {r['seconds']:.2f} s)")
    except BaseException:   # an error, an interrupt, SIGTERM: what is kept, and how to go on
        print(f"snnc sweep: {finished} of {len(todo)} rows finished and are kept in {table}; the same command "
              f"runs the rest", file=sys.stderr)
        raise
    finally:
        _CACHE.clear()   # a later sweep in this process may find other files at the same paths
        if cluster is not None:
            cluster.__exit__(None, None, None)
    results = [_typed(done[row_key(fp, r)]) for r in rows]
    summary = {"model": model, "data": data, "fingerprint": fp, "grid": grid, "ran": len(todo),
               "skipped": len(rows) - len(todo), "rows": results}
    outputs.add(os.path.join(outdir, "sweep.json"), json.dumps(_finite(summary), indent=1).encode())
    if plot:
        outputs.add(os.path.join(outdir, "accuracy.png"), accuracy_png(results, grid))
    summary["wrote"] = [table] + outputs.commit()
    return summary


def _run_all(jobs, workers, cluster=None):
    """Each job's row as it finishes: here, on a Ray ``cluster`` (one row at a time, its samples
    split), or in a pool of ``workers`` processes (spawned: a forked numba or torch thread pool
    can deadlock)."""
    if cluster is not None:
        for job in jobs:
            yield run_row(*job, cluster=cluster)
        return
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            yield run_row(*job)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = [pool.submit(run_row, *job) for job in jobs]
        for f in as_completed(futures):
            yield f.result()
    finally:   # on an error or an interrupt the queued rows are dropped, not run to the end
        pool.shutdown(wait=True, cancel_futures=True)


def _typed(r) -> dict:
    """A row read back from the CSV with its numbers as numbers (grid values stay as given)."""
    out = {k: r.get(k) for k in COLUMNS}
    for k in ("accuracy", "seconds", "sample_timesteps_per_s", "sops_per_inference"):
        out[k] = None if out[k] in (None, "") else float(out[k])
    out["samples"] = int(out["samples"])
    return out


def _finite(obj):
    from .json_output import finite
    return finite(obj)


def _is_artifact(path) -> bool:
    """An snnc artifact (a zip with the artifact's manifest) rather than a model file."""
    import zipfile
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    try:
        with zipfile.ZipFile(path) as z:
            return "manifest.json" in z.namelist()
    except zipfile.BadZipFile:
        return False


def _check_labels(data) -> None:
    """The table's accuracy needs labels: refused before any compile or run when DATA has no y."""
    import zipfile
    if os.path.isfile(data) and not data.endswith(".npy"):
        try:
            with zipfile.ZipFile(data) as z:
                names = z.namelist()
        except (OSError, zipfile.BadZipFile) as e:
            raise ValueError(f"{data}: not a DATA.npz ({e})") from None
        has = "y.npy" in names
    else:   # a streamed data set: its labels are read (small), not its samples
        from .data_stream import open_source
        has = open_source(data).y is not None
    if not has:
        raise ValueError(f"{data}: has no labels y; a sweep reports accuracy, so it needs them")


def print_table(summary, file=sys.stdout) -> None:
    for r in summary["rows"]:
        keys = " ".join(f"{k}={r[k]}" for k in KEYS if k in summary["grid"])
        print(f"{keys}: accuracy {100 * r['accuracy']:.2f}%", file=file)
