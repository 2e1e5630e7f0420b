"""snnc: compile trained PyTorch networks into integer spiking networks, simulate and inspect them.

Errors end with one line on stderr and a non-zero exit (a traceback only with --debug); output
files are written under a temporary name and renamed, so a failure never leaves one behind.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


EPILOG = """examples:
  snnc compile model.pt --input-shape 1,28,28 --calibration calib.npz --bits 8 -o net.snnc
  snnc simulate net.snnc --data test.npz --timesteps 32
  snnc simulate net.snnc --data test.npz --timesteps 8,16,32,64 --plot accuracy.png
  snnc inspect net.snnc
"""


def _shape(text):
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,28,28, got {text!r}") from None


def _layer_scale(text):
    name, _, value = text.rpartition("=")
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LAYER=SCALE, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    from .backends import BACKENDS, TARGETS

    p = argparse.ArgumentParser(prog="snnc", description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="{compile,simulate,inspect}")

    c = sub.add_parser("compile", help="compile a model file into an snnc artifact",
                       description="Lower a TorchScript (.pt) or torch.export (.pt2) model to the IR, fold BatchNorm, "
                       "normalise from calibration data, quantize to N-bit synapses and check the target.")
    c.add_argument("model", help="TorchScript file (torch.jit.save) or torch.export file (.pt2)")
    c.add_argument("-o", "--output", required=True, help="artifact to write (.snnc)")
    c.add_argument("--target", default="reference", choices=sorted(TARGETS),
                   help="; ".join(f"{k}: {t.description}" for k, t in TARGETS.items()))
    c.add_argument("--bits", type=int, default=8, help="signed weight bits, 2..16 (default 8)")
    c.add_argument("--calibration", help="DATA.npz whose x (a few hundred training samples) sets the activation scales")
    c.add_argument("--norm", default="percentile:99.9",
                   help="activation scale per layer: max, percentile:P or scale:F (F x max); default percentile:99.9")
    c.add_argument("--layer-scale", type=_layer_scale, action="append", default=[], metavar="LAYER=SCALE",
                   help="set one layer's activation scale by hand (repeatable)")
    c.add_argument("--timesteps", type=int, default=32, help="timesteps the network is meant to run (range checks, default for simulate)")
    c.add_argument("--reset", default="subtract", choices=("subtract", "zero"), help="neuron reset (default subtract)")
    c.add_argument("--v-init", default="half", choices=("half", "zero"), help="initial membrane: threshold/2 (default) or 0")
    c.add_argument("--input-bits", type=int, default=8, help="bits of the graded input (default 8)")
    c.add_argument("--pool", default="sum", choices=("sum", "spike"),
                   help="average pools: sum = window sums inside the next connection (default, more accurate); "
                        "spike = a spiking pool layer (fewer synaptic events, as Loihi CNNs often do)")
    c.add_argument("--input-shape", type=_shape, help="C,H,W or F of one sample (needed for TorchScript files)")
    c.add_argument("--profile", help="hardware profile name (configs/) or YAML file, for targets that map cores")
    c.add_argument("--allow-pickle", action="store_true",
                   help="also load pickled modules (torch.save(model)); unpickling runs code from the file, so only for files you trust")

    s = sub.add_parser("simulate", help="run an artifact on data and report accuracy",
                       description="Run a compiled network. Backends: " + ", ".join(sorted(BACKENDS)) +
                       " (reference = the bit-exact integer SNN, float = the float SNN, ann = the network as an ANN).")
    s.add_argument("artifact")
    s.add_argument("--data", required=True, help="DATA.npz with x (N, ...) and optional integer labels y (N,)")
    s.add_argument("--backend", default="reference", help="reference (default), float, ann, lava, or an installed plugin")
    s.add_argument("--timesteps", default=None, help="T, or a comma list of T to sweep (default: the artifact's)")
    s.add_argument("--encoding", default="constant", choices=("constant", "poisson"), help="input encoding (default constant)")
    s.add_argument("--seed", type=int, default=0, help="seed of the Poisson encoding")
    s.add_argument("--readout", default="membrane", choices=("membrane", "count"),
                   help="membrane: accumulated output potential (default); count: output spike counts")
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--output", help="RESULTS.npz to write (scores, predictions) for the last T")
    s.add_argument("--plot", help="PNG: accuracy vs T (several T) or per-layer firing rates (one T)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")

    i = sub.add_parser("inspect", help="print the per-layer table of an artifact")
    i.add_argument("artifact")
    i.add_argument("--json", action="store_true", help="machine-readable JSON instead of the table")
    return p


def cmd_compile(args) -> int:
    from . import artifact
    from .backends import get_target
    from .compile import compile_model
    from .config import CompileConfig
    from .data import load_data
    from .frontend import load_file

    target = get_target(args.target)
    graph = load_file(args.model, input_shape=args.input_shape, allow_pickle=args.allow_pickle)
    calib = None
    if args.calibration:
        from .ir import input_node, verify
        verify(graph)
        calib, _ = load_data(args.calibration, graph.nodes[input_node(graph)]["shape"])
    config = CompileConfig(bits=args.bits, norm=args.norm, layer_scales=dict(args.layer_scale), calibration=calib,
                           timesteps=args.timesteps, reset=args.reset, v_init=args.v_init, input_bits=args.input_bits, pool=args.pool,
                           target=args.target, profile=args.profile)
    t0 = time.perf_counter()
    q = compile_model(graph, config, target=target)
    extra = target.write_extra(q, config, args.output) if target.write_extra else []
    artifact.save(q, args.output)
    for layer, r in q.graph["snnc"]["ranges"].items():
        if r["membrane_saturates"]:
            print(f"note: layer {layer} may saturate its {q.graph['snnc']['membrane_bits']}-bit membrane over "
                  f"{args.timesteps} steps (worst case {r['membrane']})", file=sys.stderr)
    print(f"compiled {args.model} -> {args.output} ({args.target}, {args.bits}-bit weights, "
          f"{sum(1 for _ in q.nodes)} nodes) in {time.perf_counter() - t0:.2f} s")
    for path in extra or []:
        print(f"wrote {path}")
    return 0


def cmd_simulate(args) -> int:
    from . import artifact
    from .backends import get_backend
    from .data import load_data, save_results
    from .ir import input_node

    q = artifact.load(args.artifact)
    x, y = load_data(args.data, q.nodes[input_node(q)]["shape"])
    ts = [int(t) for t in args.timesteps.split(",")] if args.timesteps else [q.graph["snnc"].get("timesteps", 32)]
    if min(ts) < 1:
        raise ValueError("--timesteps must be >= 1")
    run = get_backend(args.backend)
    accs, result = [], None
    for T in ts:
        t0 = time.perf_counter()
        result = run(q, x, timesteps=T, encoding=args.encoding, seed=args.seed, readout=args.readout,
                     batch_size=args.batch_size, progress=not args.no_progress and sys.stderr.isatty())
        dt = time.perf_counter() - t0
        line = f"{args.backend} T={T}: {len(x)} samples in {dt:.2f} s ({len(x) * T / max(dt, 1e-9):,.0f} sample*timesteps/s)"
        if y is not None:
            accs.append(float((result.predictions == y).mean()))
            line += f"  accuracy {100 * accs[-1]:.2f}%"
        print(line)
    if args.output:
        save_results(args.output, result.scores, result.predictions)
        print(f"wrote {args.output}")
    if args.plot:
        from .plots import plot_accuracy, plot_rates
        if len(ts) > 1 and accs:
            plot_accuracy(args.plot, ts, {args.backend: [100 * a for a in accs]})
        else:
            plot_rates(args.plot, result.rates)
        print(f"wrote {args.plot}")
    return 0


def cmd_inspect(args) -> int:
    from . import artifact
    from .inspect import layer_table, summary

    q = artifact.load(args.artifact)
    info = summary(q)
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        print(layer_table(info))
    return 0


COMMANDS = {"compile": cmd_compile, "simulate": cmd_simulate, "inspect": cmd_inspect}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("snnc: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one clear line; the traceback only when asked
        if args.debug:
            raise
        print(f"snnc {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
