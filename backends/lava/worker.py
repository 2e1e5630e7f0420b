"""The Lava side of the Lava backend: ``python -m snn_compiler.backends.lava.worker JOB_DIR``.

Runs under .venv-lava (Python 3.10, lava-nc 0.10.0). Reads ``graph.snnc``, ``x.npy`` and
``params.json`` from JOB_DIR, runs the network on Lava's fixed-point CPU simulator and writes
``result.npz`` (output counts and final membrane per sample, per-layer totals, recorded counts;
for latency read-outs each sample's decision step and the Output state at it).
The parent (:func:`snn_compiler.backends.lava.run`) owns the timeout and kills this process group.
"""
# Lava first: importing lava.proc.* sets the multiprocessing start method and raises if anything
# set or queried it before (notes: gotcha 1).
import lava.magma.core.run_configs  # noqa: F401  isort: skip
import lava.proc.dense.process  # noqa: F401  isort: skip

import json
import os
import sys
import time

import numpy as np

from snn_compiler.backends.lava.shm import log_shared_memory, unlink_shared_memory


def _write_progress(job, done, total):
    tmp = os.path.join(job, "progress.tmp")
    with open(tmp, "w") as f:
        f.write(f"{done} {total}\n")
    os.replace(tmp, os.path.join(job, "progress"))


def _watch(path, parent, interval=0.1):
    """Leave at once when a process model raised (it wrote ``path``; the parent kills the group),
    and take the whole process group down if the parent died (nothing may outlive it; the job
    folder, which the parent would have removed, goes too)."""
    import shutil
    import signal
    import threading

    def watch():
        while not os.path.exists(path):
            if parent and os.getppid() != parent:
                job = os.path.dirname(path)
                unlink_shared_memory(job)  # names go now; the memory when the last process dies
                shutil.rmtree(job, ignore_errors=True)
                os.killpg(os.getpgid(0), signal.SIGKILL)
            time.sleep(interval)
        time.sleep(interval)  # let the model finish writing to the log
        print("snnc lava worker: a process model failed (traceback above); stopping.", file=sys.stderr, flush=True)
        os._exit(3)
    threading.Thread(target=watch, name="snnc-fault-watch", daemon=True).start()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m snn_compiler.backends.lava.worker JOB_DIR", file=sys.stderr)
        return 2
    job = argv[0]
    from snn_compiler import artifact
    from snn_compiler.backends.lava.build import build_network

    fault_file = os.path.join(job, "fault.txt")
    os.environ["SNNC_LAVA_FAULT_FILE"] = fault_file  # inherited by Lava's forked process models
    with open(os.path.join(job, "params.json")) as f:
        p = json.load(f)
    log_shared_memory(job)
    _watch(fault_file, p.get("parent_pid"))
    graph = artifact.load(os.path.join(job, "graph.snnc"))
    x = np.load(os.path.join(job, "x.npy"), allow_pickle=False)
    fault = tuple(p["fault"]) if p.get("fault") else None
    t0 = time.perf_counter()
    net = build_network(graph, x, timesteps=p["timesteps"], encoding=p["encoding"], seed=p["seed"],
                        readout=p["readout"], record=p["record"], fault=fault,
                        neurons=p.get("neurons", "auto"), k=p.get("k"), record_steps=p.get("record_steps", []))
    t_build = time.perf_counter() - t0
    total = net.hardware_steps
    chunk = max(1, int(p.get("chunk_samples", 1))) * net.timesteps if p.get("progress") else total
    t0 = time.perf_counter()
    try:
        done = 0
        while done < total:
            n = min(chunk, total - done)
            net.run(steps=n)
            done += n
            if p.get("progress"):
                _write_progress(job, min(done // net.timesteps, net.n_samples), net.n_samples)
        t_run = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = {"output_counts": net.output_counts(), "output_membrane": net.output_membrane()}
        if p.get("k"):  # a latency read-out (first-spike: k = 1)
            out["decision_step"], out["decision_counts"], out["decision_membrane"] = net.output_decisions()
        for i, layer in enumerate(net.plan.layers):
            if net.plan.layers[layer].spiking:
                out[f"total/{i}"] = np.array(net.total_spikes(layer))
                if p["record"]:
                    out[f"counts/{i}"] = net.layer_counts(layer)
            if layer in p.get("record_steps", []):
                out[f"steps/{i}"] = net.layer_steps(layer)
        t_read = time.perf_counter() - t0
    finally:
        net.stop()
    out["layers"] = np.array(list(net.plan.layers), dtype=str)
    out["kinds"] = np.array([net.kinds[n] for n in net.plan.layers], dtype=str)
    out["timing"] = np.array([t_build, t_run, t_read, total])
    tmp = os.path.join(job, "result.tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, os.path.join(job, "result.npz"))
    return 0


if __name__ == "__main__":
    try:
        rc = main()
    except BaseException:  # noqa: BLE001  report, then leave without waiting on Lava's threads
        import traceback
        traceback.print_exc()
        rc = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)  # never hang at exit on a half-stopped runtime (notes: gotcha 2); the parent kills the group
