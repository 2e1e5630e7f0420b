"""snnc: compile trained PyTorch networks into integer spiking networks, simulate and inspect them.

Errors end with one line on stderr and a non-zero exit (a traceback only with --debug). A command's
outputs are checked before it starts and committed together once it has succeeded
(snn_compiler.outputs), so a failure, an interrupt or SIGTERM leaves no file behind.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import warnings

from . import json_output, outputs
from .commands import COMMANDS


EPILOG = """examples:
  snnc compile model.pt --input-shape 1,28,28 --calibration calib.npz --bits 8 -o net.snnc
  snnc simulate net.snnc --data test.npz --timesteps 32
  snnc simulate net.snnc --data test.npz --timesteps 8,16,32,64 --plot accuracy.png
  snnc inspect net.snnc
  snnc bin-events events.npz --bins 16 -o frames.npz && snnc simulate net.snnc --data frames.npz
"""


def _shape(text):
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,28,28, got {text!r}") from None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("snnc")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _layer_scale(text):
    name, _, value = text.rpartition("=")
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LAYER=SCALE, got {text!r}") from None


def _run_options(p, readout=True, batch=True):
    """The options of every command that runs a network: encoding, seed, read-out, batch, progress."""
    from .sim.encode import ENCODINGS
    from .sim.readout import READOUTS
    p.add_argument("--encoding", default="constant", choices=tuple(ENCODINGS),
                   help="input encoding: constant (default), poisson, pso (needs a net compiled with --encoding pso), "
                        "burst, ch")
    p.add_argument("--seed", type=int, default=0, help="seed of the poisson encoding (the others are deterministic)")
    if readout:
        p.add_argument("--readout", default="membrane", choices=READOUTS,
                       help="membrane: accumulated output potential (default); membrane-sum, membrane-max: its sum "
                            "or maximum over all steps (reference and float backends); count: output spike counts; "
                            "first-spike: the output neuron that spikes first decides (a sample stops once decided); "
                            "k-spikes: the first output neuron to reach --k spikes decides")
        p.add_argument("--k", type=int, default=None, metavar="K",
                       help="with --readout k-spikes: the output spikes that decide a sample (>= 1)")
    if batch:
        p.add_argument("--batch-size", type=int, default=256, help="samples simulated together (default 256)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _ray_options(p, what, workers=True):
    p.add_argument("--ray", default=None, metavar="local|auto|ADDRESS",
                   help=f"split {what} across a Ray cluster (pip install 'snnc[ray]'): local starts one here, auto "
                        f"joins the running one, HOST:PORT that one; results identical to a local run")
    if workers:
        p.add_argument("--workers", type=int, default=None,
                       help="with --ray: the Ray workers used (default: every CPU of the cluster)")


def build_parser() -> argparse.ArgumentParser:
    from .sim.encode import ENCODINGS
    from .targets import BACKENDS, TARGETS, get_target

    p = argparse.ArgumentParser(prog="snnc", description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    p.add_argument("--version", action="version", version=f"snnc {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="{compile,export,simulate,inspect,check,report,sweep,bin-events,setup-lava}")

    c = sub.add_parser("compile", help="compile a model file into an snnc artifact",
                       description="Lower a TorchScript (.pt) or torch.export (.pt2) model to the IR, fold BatchNorm, "
                       "normalise from calibration data, quantize to N-bit synapses and check the target.")
    c.add_argument("model", help="the trained model: TorchScript (.pt, torch.jit.save), torch.export (.pt2), ONNX "
                   "(.onnx), Keras (.h5) or NIR (.nir, with --dt) file")
    c.add_argument("-o", "--output", required=True, help="artifact to write (.snnc)")
    c.add_argument("--target", default="reference", choices=sorted(TARGETS),
                   help="; ".join(f"{k}: {get_target(k).description}" for k in TARGETS))
    c.add_argument("--bits", type=int, help="signed weight bits, 2..16 (default 8; truenorth 4, which it maps exactly)")
    c.add_argument("--calibration", help="DATA.npz whose x (a few hundred training samples) sets the activation scales")
    c.add_argument("--norm", help="activation scale per layer: max, percentile:P, scale:F (F x max), model "
                   "(data-free: estimated from inputs uniform in [0, 1] and BatchNorm statistics) or bound "
                   "(data-free weight bound, Diehl et al.); default percentile:99.9, or model without --calibration")
    c.add_argument("--layer-scale", type=_layer_scale, action="append", default=[], metavar="LAYER=SCALE",
                   help="set one layer's activation scale by hand; LAYER is a name or an index (neuron layers "
                        "in order, from 0); repeatable")
    c.add_argument("--channel-wise", action="store_true",
                   help="one activation scale per channel of each hidden layer (from the calibration data), not one "
                        "per layer: depthwise/MobileNet-style layers whose channels differ in range spike far more")
    c.add_argument("--layer-factor", type=_layer_scale, action="append", default=[], metavar="LAYER=F",
                   help="multiply one layer's normalization scale by F (> 1: fewer spikes, less clipping); "
                        "LAYER a name or an index; repeatable")
    c.add_argument("--timesteps", type=int, default=32, help="timesteps the network is meant to run (range checks, default for simulate)")
    c.add_argument("--reset", default="subtract", choices=("subtract", "zero"), help="neuron reset (default subtract)")
    c.add_argument("--v-init", default="half", choices=("half", "zero"), help="initial membrane: threshold/2 (default) or 0")
    c.add_argument("--input-bits", type=int, default=8, help="bits of the graded input (default 8)")
    c.add_argument("--pool", default="sum", choices=("sum", "spike"),
                   help="average pools: sum = window sums inside the next connection (default, more accurate); "
                        "spike = a spiking pool layer (fewer synaptic events, as Loihi CNNs often do)")
    c.add_argument("--input-shape", type=_shape, help="C,H,W or F of one sample (default: the file's, else the "
                   "calibration data's)")
    c.add_argument("--profile", help="hardware profile name (configs/) or YAML file, for targets that map cores")
    c.add_argument("--chips", type=int, help="chips of the hardware profile (overrides its 'chips'; the core bound and the map use it)")
    c.add_argument("--allow-pickle", action="store_true",
                   help="also load pickled modules (torch.save(model)) and pickled members of .pt2 files; unpickling runs "
                        "code from the file, so only for files you trust")
    c.add_argument("--trust-code", action="store_true",
                   help="load model files whose code does more than compute tensors (TorchScript __setstate__, file or "
                        "system ops, .pt2 symbolic-size code, AOTInductor libraries); loading runs that code, so only "
                        "for files you trust")
    c.add_argument("--encoding", default="constant", choices=tuple(ENCODINGS),
                   help="the input encoding the network will run with; only pso changes the compile (its input "
                        "gain k goes into the first weights)")
    c.add_argument("--dt", type=float, help="NIR files: the timestep to discretise time constants at (NIR stores "
                   "none; snnTorch exports with 1e-4, Norse uses 1e-3, sinabs counts steps: 1)")
    c.add_argument("--discretization", choices=("euler", "exact"),
                   help="NIR files: euler (beta = 1 - dt/tau: snnTorch, Norse; default) or exact (exp(-dt/tau): sinabs)")
    c.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")
    c.add_argument("--no-progress", action="store_true", help="no progress bars (calibration, mapping)")

    s = sub.add_parser("simulate", help="run an artifact on data and report accuracy",
                       description="Run a compiled network. Backends: " + ", ".join(sorted(BACKENDS)) +
                       " (reference = the bit-exact integer SNN, float = the float SNN, ann = the network as an ANN).")
    s.add_argument("artifact", help="the compiled network (.snnc, from snnc compile)")
    s.add_argument("--data", required=True, help="DATA.npz with x (N, ...) and optional integer labels y (N,); x of "
                   "shape (N, T, *input shape) is a sequence, one frame per step, and sets T. A directory of .npz "
                   "shards, a directory with x.npy (and y.npy) or X.npy[,Y.npy] is read a batch at a time")
    s.add_argument("--backend", default="reference", help="reference (default), float, ann, lava, or an installed plugin")
    s.add_argument("--timesteps", default=None, help="T, or a comma list of T to sweep (default: the artifact's)")
    s.add_argument("--engine", default=None, choices=("auto", "numba", "numpy", "torch"),
                   help="reference backend's engine: auto (numba when installed; default), numba, numpy, or torch "
                        "(on --device); all give identical results")
    s.add_argument("--device", default=None, help="with --engine torch: cpu (default) or cuda")
    _run_options(s)
    s.add_argument("--json", action="store_true", help="print the results as JSON (for scripts)")
    s.add_argument("--timeout", type=float, default=None,
                   help="seconds the lava backend may run (default: scaled to the work, capped; see README)")
    s.add_argument("--output", help="RESULTS.npz to write (scores, predictions) for the last T")
    s.add_argument("--record", default=None, metavar="LAYER[,LAYER]",
                   help="with --output (reference, float): also save these layers' spikes at every step of the last "
                        "T as spikes/LAYER, (N, T, neurons) uint8, neurons in (C, H, W) order; a membrane read-out's "
                        "layer: its membrane after each step as membrane/LAYER")
    s.add_argument("--plot", help="PNG: accuracy vs T (several T) or per-layer firing rates (one T)")
    _ray_options(s, "the run's samples")

    b = sub.add_parser("bin-events", help="bin event streams (x, y, t, p) into frames: a sequence DATA.npz",
                       description="Bin event-camera streams (tonic's x, y, t, p layout) into T frames per sample "
                       "(T equal time bins over each sample's [t_min, t_max] or --window; channel 0 OFF, 1 ON; "
                       "event counts; see snn_compiler.events) and write DATA.npz: x (N, T, 2, H, W), y the labels.")
    b.add_argument("events", help="EVENTS.npz: plain arrays x, y, t, p (all samples' events, concatenated), "
                   "sensor_size (W, H), optional offsets (N + 1) and labels (N,); no pickle")
    b.add_argument("--bins", type=int, required=True, help="T: frames per sample")
    b.add_argument("--window", default=None, help="T0,T1: the time window binned, in the timestamps' unit "
                   "(default: each sample's own first to last event)")
    b.add_argument("-o", "--output", required=True, help="DATA.npz to write")

    L = sub.add_parser("setup-lava", help="make the Lava backend's Python 3.10 environment (for a pip install)",
                       description="Create a Python 3.10 virtual environment with lava-nc 0.10.0 and the packages "
                       "snnc's core needs there (pinned, hashes checked), copy this snnc into it, and record it so "
                       "--backend lava and snnc check --backends reference,lava find it. A checkout uses "
                       "scripts/bootstrap.sh instead; SNNC_LAVA_PYTHON overrides both.")
    L.add_argument("--python", default=None, help="the Python 3.10 to build it with (default: python3.10 on PATH, "
                   "else pyenv's)")
    L.add_argument("--dir", default=None, help="where to create it (default: $XDG_DATA_HOME/snnc/lava-venv, "
                   "~/.local/share/snnc/lava-venv)")

    e = sub.add_parser("export", help="write an artifact in another format (NIR)",
                       description="Write a compiled network as a NIR graph (the nir package's HDF5 file): the float "
                       "SNN (--form float) or the integer SNN (--form int). What NIR cannot express (reset by "
                       "subtraction, initial membranes) is kept in node metadata and warned about.")
    e.add_argument("artifact", help="the compiled network (.snnc) to export")
    e.add_argument("--format", required=True, choices=("nir",), help="output format")
    e.add_argument("--form", default="float", choices=("float", "int"),
                   help="float: normalised weights, threshold 1 (default); int: integer weights and thresholds")
    e.add_argument("--dt", type=float, default=1e-4, help="timestep the LIF time constants are written for "
                   "(tau = dt / (1 - beta); default 1e-4, snnTorch's)")
    e.add_argument("--strict", action="store_true", help="refuse what NIR cannot express instead of warning")
    e.add_argument("-o", "--output", required=True, help="file to write (.nir)")

    i = sub.add_parser("inspect", help="print the per-layer table of an artifact",
                       description="Print a compiled artifact's per-layer table: shapes, weight bits and ranges, "
                       "scales, thresholds, decays, worst-case current ranges, and for a mapped artifact its cores "
                       "against the lower bound (--cores recounts every core).")
    i.add_argument("artifact", help="the compiled network (.snnc) to describe")
    i.add_argument("--json", action="store_true", help="machine-readable JSON instead of the table")
    i.add_argument("--cores", action="store_true", help="per-core detail, recounted by the independent core-map checker")

    k = sub.add_parser("check", help="run an artifact on two backends and compare every layer's spikes",
                       description="Run two backends on the same data and compare every layer's spike counts and the "
                       "read-out. Integer pairs must be identical (the first divergence is named: sample, layer, "
                       "neuron, timestep, values); a pair with float passes within --tolerance. Exit 0: identical or "
                       "within tolerance; 1: error; 3: divergence.")
    k.add_argument("artifact", help="the compiled network (.snnc) to run on both backends")
    k.add_argument("--data", required=True, help="DATA.npz with x (N, ...), or a sequence (N, T, *input shape) that "
                   "sets T; labels, if any, are not used")
    k.add_argument("--backends", default="reference,lava",
                   help="two backends, comma-separated: reference, reference-numpy, lava, float or a plugin "
                        "(default reference,lava); integer pairs must be identical, float within --tolerance")
    k.add_argument("--timesteps", default=None, help="T (default: the artifact's)")
    _run_options(k)
    k.add_argument("--tolerance", type=float, default=None,
                   help="with float: mean |rate difference| allowed per layer (default 0.05 spikes/neuron/step)")
    k.add_argument("--min-agreement", type=float, default=None,
                   help="with float: fraction of samples whose predictions must agree (default 0.9)")
    k.add_argument("--timeout", type=float, default=None, help="seconds allowed for each Lava run (default: from its size)")
    k.add_argument("--json", action="store_true", help="machine-readable JSON instead of the report")

    r = sub.add_parser("report", help="write an HTML report: accuracy against T, where accuracy and energy go",
                       description="Run the ANN, float SNN and integer SNN readings of an artifact on data and write "
                       "one self-contained HTML page: accuracy against T, the accuracy lost to clipping, too few "
                       "timesteps and quantization (per cause and per layer), synaptic operations and energy "
                       "against the ANN, a spike raster, core utilization when mapped.")
    r.add_argument("artifact", help="the compiled network (.snnc) to report on")
    r.add_argument("--data", required=True, help="DATA.npz with x (N, ...) and optional labels y (without: agreement with the ANN)")
    r.add_argument("-o", "--output", required=True, help="report.html to write")
    r.add_argument("--timesteps", default=None, help="comma list of T for the accuracy curve (default: T/8 .. 2T of the artifact's T)")
    _run_options(r, readout=False, batch=False)
    r.add_argument("--samples", type=int, default=500, help="samples used, from the start of the data (default 500)")
    w = sub.add_parser("sweep", help="run a grid of compile and run settings; one table of accuracy and throughput",
                       description="Run every combination of the --grid values on the reference backend and write "
                       "OUTDIR/sweep.csv (one row per run, appended as each finishes), OUTDIR/sweep.json and "
                       "OUTDIR/accuracy.png. Compile keys (bits, norm) compile a model file once per setting into "
                       "OUTDIR/artifacts/; run keys (timesteps, encoding, seed, readout) reuse it. A rerun skips "
                       "the rows already in sweep.csv for the same input files.")
    w.add_argument("model", help="a model file (as for snnc compile) or a compiled artifact (.snnc: run keys only)")
    w.add_argument("--data", required=True, help="DATA.npz with x (N, ...) and labels y (N,), or a streamed data set "
                   "as for snnc simulate (a directory of .npz shards, x.npy and y.npy)")
    w.add_argument("--calibration", help="DATA.npz for compiling a model file (as snnc compile's)")
    w.add_argument("--input-shape", type=_shape, help="C,H,W or F of one sample, for compiling a model file")
    w.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="one key's values, repeatable: bits, norm (model file only), timesteps, encoding, seed, "
                        "readout (membrane, count, first-spike); a key not given keeps its default")
    w.add_argument("--workers", type=int, default=None, help="rows run in parallel processes (default 1); with "
                   "--ray: the Ray workers that split each row's samples (default: every CPU of the cluster)")
    _ray_options(w, "each row's samples", workers=False)
    w.add_argument("--batch-size", type=int, default=256, help="samples simulated together (default 256)")
    w.add_argument("--no-plot", action="store_true", help="no accuracy.png (no matplotlib needed)")
    w.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="existing directory for the table and plot")
    w.add_argument("--json", action="store_true", help="print the summary as JSON (for scripts)")
    for name, cmd in sub.choices.items():   # every command: one JSON object on stdout, success or not
        if not any("--json" in a.option_strings for a in cmd._actions):
            cmd.add_argument("--json", action="store_true",
                             help="print one JSON object on stdout (result, warnings, error); text goes to stderr")
    return p




class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwind like an interrupt so temporary files are removed."""


def _terminate(signum, frame):
    raise Terminated(signum)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _on_disk(mark) -> str:
    """What an interrupted command left: nothing, or (a signal held through the final renames,
    delivered once they were done) every one of its outputs."""
    done = outputs.COMMITTED[mark:]
    return "no output was written" if not done else f"its outputs were all written first: {', '.join(done)}"


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.json:
        return _run(args)
    # --json: the command's own text goes to stderr, stdout holds exactly one JSON object
    json_output.reset()
    seen, error = [], []
    with contextlib.redirect_stdout(sys.stderr):
        code = _run(args, seen, error)
    print(json_output.finish(args.command, code, seen, error[0] if error else None))
    return code


def _run(args, seen=None, error=None) -> int:
    """Run the command; its warnings (and, when ``error`` is a list, its error line) are also
    appended to ``seen`` / ``error`` for the JSON object."""
    handlers = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
    committed = len(outputs.COMMITTED)   # outputs this command puts in place are listed after this mark
    caught = []
    try:
        with warnings.catch_warnings(record=not args.debug) as caught:
            if not args.debug:
                warnings.simplefilter("always")
            code = COMMANDS[args.command](args)
            sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        for line in _lines(caught):  # a successful run shows its warnings, once each
            print(f"snnc {args.command}: warning: {line}", file=sys.stderr)
        return code
    except BrokenPipeError:  # `snnc inspect | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        return _failed(args, "", f"interrupted; {_on_disk(committed)}", 130, error)
    except Terminated as t:
        return _failed(args, "", f"terminated by signal {t.args[0]}; {_on_disk(committed)}", 128 + int(t.args[0]), error)
    except Exception as e:  # one clear line; the traceback only when asked
        if args.debug:
            raise
        return _failed(args, "error: ", _one_line(e), 1, error)
    finally:
        for sig, h in handlers.items():
            signal.signal(sig, h)
        if seen is not None:
            seen.extend(_lines(caught))


def _lines(caught) -> list:
    """The recorded warnings as one-line messages, each once."""
    return list(dict.fromkeys(_one_line(w.message) for w in caught or []))


def _failed(args, kind: str, message: str, code: int, error) -> int:
    print(f"snnc {args.command}: {kind}{message}", file=sys.stderr)
    if error is not None:
        error.append(message)
    return code


if __name__ == "__main__":
    sys.exit(main())
