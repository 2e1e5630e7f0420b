"""What each snnc command does, given its parsed arguments (the parser and the error handling
around every command are in :mod:`snn_compiler.cli`). Each returns its exit code."""
from __future__ import annotations

import os
import sys
import time
import warnings

from .extras import check_available
from .json_output import emit
from .run_inputs import data_shape, load_data_for, sequence_timesteps, timesteps_option
from .runs import Runner, check_ray_options, open_data_for


def cmd_compile(args) -> int:
    from . import artifact
    from .compile import compile_model
    from .targets import get_target
    from .config import CompileConfig
    from .frontend import load_file
    from .frontend.errors import NeedsInputShape
    from .outputs import PendingOutputs

    profile_file = args.profile if args.profile and os.path.isfile(args.profile) else None
    outputs = PendingOutputs(inputs=[args.model, args.calibration, profile_file])
    outputs.reserve(args.output)
    target = get_target(args.target)
    # every format (NIR too) through the one registry; it refuses an option the file's format does not take
    load = dict(allow_pickle=args.allow_pickle, trust_code=args.trust_code, dt=args.dt,
                discretization=args.discretization)
    try:
        graph = load_file(args.model, input_shape=args.input_shape, **load)
    except NeedsInputShape:
        if args.input_shape or not args.calibration:
            raise
        graph = load_file(args.model, input_shape=data_shape(args.calibration), **load)
    calib = None
    if args.calibration:
        from .ir import verify
        verify(graph)
        calib, _ = load_data_for(graph, args.calibration)
    config = CompileConfig(bits=target.weight_bits(args.bits), norm=args.norm, layer_scales=dict(args.layer_scale),
                           layer_factors=dict(args.layer_factor), calibration=calib,
                           timesteps=args.timesteps, reset=args.reset, v_init=args.v_init, input_bits=args.input_bits, pool=args.pool,
                           target=args.target, profile=args.profile, chips=args.chips,
                           progress=not args.no_progress and sys.stderr.isatty(), encoding=args.encoding,
                           channel_wise=args.channel_wise)
    config = target.prepare(config)  # the registers and profile extra_outputs read too
    t0 = time.perf_counter()
    q = compile_model(graph, config, target=target)
    extra = target.extra_outputs(q, config, args.output) if target.extra_outputs else {}
    for path, content in extra.items():
        outputs.add(path, content)
    outputs.add(args.output, artifact.to_bytes(q))
    outputs.commit()
    notes = [f"layer {layer} may saturate its {q.graph['snnc']['membrane_bits']}-bit membrane over {config.timesteps} "
             f"steps (worst case {r['membrane']})" for layer, r in q.graph["snnc"]["ranges"].items()
             if r["membrane_saturates"]]
    dt = time.perf_counter() - t0
    meta = q.graph["snnc"]
    if args.json:
        emit({"model": args.model, "output": args.output, "target": args.target, "bits": meta["bits"],
              "norm": meta.get("norm"), "nodes": q.number_of_nodes(), "seconds": round(dt, 3),
              "extra_outputs": list(extra), "notes": notes})
        return 0
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"compiled {args.model} -> {args.output} ({args.target}, {meta['bits']}-bit weights, norm {meta.get('norm')}, "
          f"{q.number_of_nodes()} nodes) in {dt:.2f} s")
    if "core_map" in meta:
        from .mapping import map_line
        print(map_line(meta["core_map"]))
    for path in extra:
        print(f"wrote {path}")
    return 0


def cmd_simulate(args) -> int:
    from . import artifact
    from .targets import get_backend
    from .data import result_bytes
    from .ir import output_node
    from .outputs import PendingOutputs

    outputs = PendingOutputs(inputs=[args.artifact, args.data])
    for path in (args.output, args.plot):
        if path:
            outputs.reserve(path)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.plot:  # before the sweep, not after it
        check_available("matplotlib", "--plot")
    check_ray_options(args.ray, args.workers, args.backend)
    q = artifact.load(args.artifact)
    ts = timesteps_option(args.timesteps, q.graph["snnc"].get("timesteps", 32))
    src = open_data_for(q, args.data, n_outputs=q.nodes[output_node(q)]["shape"][0], sequences=True)
    x, y = src.x, src.y   # x: None for a streamed data set (read a batch at a time)
    ts = sequence_timesteps(args, q, src.peek(), ts)
    get_backend(args.backend)   # an unknown backend is refused before any run
    extra = {}
    if args.timeout is not None:
        if args.backend != "lava":
            raise ValueError("--timeout applies to the lava backend only")
        extra["timeout"] = args.timeout
    if (args.engine or args.device) and args.backend != "reference":
        raise ValueError("--engine and --device apply to the reference backend only")
    if args.device and args.engine != "torch":
        raise ValueError("--device applies to --engine torch only")
    extra.update({k: v for k, v in (("engine", args.engine), ("device", args.device)) if v})
    if args.k is not None and args.readout != "k-spikes":
        raise ValueError("--k applies to --readout k-spikes only")
    if args.readout == "k-spikes":
        if args.k is None or args.k < 1:
            raise ValueError(f"--readout k-spikes needs --k K, a whole number >= 1 (got {args.k})")
        extra["k"] = args.k
    record = _record_layers(args)
    accs, lats, result, rows = [], [], None, []
    with Runner(q, src, args.backend, ray=args.ray, workers=args.workers, batch_size=args.batch_size) as runner:
        opts = dict(encoding=args.encoding, seed=args.seed, readout=args.readout, **extra)
        runner.warm(opts)   # compile the numba kernels first: the figures exclude JIT warm-up
        for i, T in enumerate(ts):
            t0 = time.perf_counter()
            rec = {"record_steps": record} if record and i == len(ts) - 1 else {}  # the last T's: what --output saves
            result, _ = runner.run(dict(opts, timesteps=T, progress=not args.no_progress and sys.stderr.isatty(), **rec))
            dt = time.perf_counter() - t0
            rows.append(_result_row(args, q, T, src.n, dt, result, y, accs, lats))
    if args.output:
        outputs.add(args.output, result_bytes(result))
    if args.plot:
        from .plots import plot_accuracy, plot_accuracy_latency, plot_latency, plot_rates
        latency = getattr(result, "decision_time", None) is not None
        if latency and len(ts) > 1 and accs:
            png = plot_accuracy_latency(None, {args.backend: (ts, lats, [100 * a for a in accs])})
        elif latency and y is not None:
            png = plot_latency(None, ts[-1], {args.backend: (result.decision_time, result.predictions == y)})
        elif len(ts) > 1 and accs:
            png = plot_accuracy(None, ts, {args.backend: [100 * a for a in accs]},
                                ann=None if x is None else _ann_accuracy(q, x, y))   # streamed: no ANN line
        else:
            png = plot_rates(None, result.rates)
        outputs.add(args.plot, png)
    written = outputs.commit()
    if args.json:
        emit({"results": rows, "wrote": written})
        return 0
    for path in written:
        print(f"wrote {path}")
    return 0


def _result_row(args, q, T, n, dt, result, y, accs, lats) -> dict:
    """One T's row of simulate's results (printed unless --json), its warnings raised; appends to
    ``accs`` and ``lats`` what the plot draws."""
    from .activity import activity_warnings, checked_rates
    row = {"backend": args.backend, "timesteps": T, "samples": n, "seconds": round(dt, 4)}
    line = f"{args.backend}{'' if args.backend == 'ann' else f' T={T}'}: {n} samples in {dt:.2f} s"
    if args.backend != "ann":  # the ANN reading has no timesteps to count
        row["sample_timesteps_per_s"] = round(n * T / max(dt, 1e-9), 1)
        line += f" ({row['sample_timesteps_per_s']:,.0f} sample*timesteps/s)"
    if y is not None:
        accs.append(float((result.predictions == y).mean()))
        row["accuracy"] = accs[-1]
        line += f"  accuracy {100 * accs[-1]:.2f}%"
    dtime = getattr(result, "decision_time", None)
    if dtime is not None:  # a latency read-out (first-spike, k-spikes)
        from .plots import mean_latency
        lats.append(mean_latency(dtime, T))
        row.update(decided=float((dtime > 0).mean()) if len(dtime) else 0.0, mean_latency=lats[-1],
                   ties=int(result.tied.sum()))
        line += (f"  decided {100 * row['decided']:.1f}% after {lats[-1]:.2f} steps on average"
                 f" ({row['ties']} ties)")
    if not args.json:
        print(line)
    for warning in activity_warnings(checked_rates(q, result.rates, args.readout), T, "measured on the data"):
        warnings.warn(warning, UserWarning, stacklevel=1)  # a silent or saturated layer, named
    return row


def _record_layers(args):
    """``--record LAYER[,LAYER]`` as a list of layer names (simulate checks them), or None."""
    if args.record is None:
        return None
    if args.backend not in ("reference", "float"):
        raise ValueError(f"--record applies to the reference and float backends (got --backend {args.backend})")
    if not args.output:
        raise ValueError("--record saves spikes into RESULTS.npz: give --output RESULTS.npz")
    layers = [n.strip() for n in args.record.split(",")]
    if not all(layers):
        raise ValueError(f"--record takes layer names separated by commas, got {args.record!r}")
    return layers


def _ann_accuracy(q, x, y):
    """The ANN reading's accuracy (%), the reference line of an accuracy plot; None where there is
    none (a sequence, or trained spiking layers)."""
    from .ir import input_node
    from .sim.emulator import run_ann
    if x.ndim != len(q.nodes[input_node(q)]["shape"]) + 1:
        return None
    try:
        return float(100.0 * (run_ann(q, x).argmax(axis=1) == y).mean())
    except ValueError:  # "a trained spiking layer has no ANN reading"
        return None


def cmd_inspect(args) -> int:
    from . import artifact
    from .summary import layer_table, summary

    q = artifact.load(args.artifact)
    info = summary(q, cores=args.cores)
    if args.json:
        emit(info)
    else:
        print(layer_table(info, cores=args.cores))
    return 0


def cmd_check(args) -> int:
    from . import artifact
    from .conformance import compare_backends, format_result
    from .ir import output_node

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if args.timeout is not None and "lava" not in backends:
        raise ValueError("--timeout applies to the lava backend only")
    q = artifact.load(args.artifact)
    ts = timesteps_option(args.timesteps, q.graph["snnc"].get("timesteps", 32))
    if len(ts) != 1:
        raise ValueError(f"check runs one T; got --timesteps {args.timesteps}")
    x, _ = load_data_for(q, args.data, n_outputs=q.nodes[output_node(q)]["shape"][0], sequences=True)
    ts = sequence_timesteps(args, q, x, ts)
    options = {b: {} for b in backends}
    if args.readout == "k-spikes":
        if args.k is None or args.k < 1:
            raise ValueError(f"--readout k-spikes needs --k K, a whole number >= 1 (got {args.k})")
        options = {b: {"k": args.k} for b in backends}
    elif args.k is not None:
        raise ValueError("--k applies to --readout k-spikes only")
    if args.timeout is not None:
        options["lava"]["timeout"] = args.timeout
    r = compare_backends(q, x, backends, timesteps=ts[0], encoding=args.encoding, seed=args.seed,
                         readout=args.readout, batch_size=args.batch_size, tolerance=args.tolerance,
                         min_agreement=args.min_agreement, progress=not args.no_progress and sys.stderr.isatty(),
                         options=options)
    if args.json:
        emit(r)
    else:
        print(format_result(r))
    return 0 if r["passed"] else 3  # 1: error, 2: argparse's usage error, 3: a divergence


def cmd_report(args) -> int:
    from . import artifact
    from .ir import output_node
    from .outputs import PendingOutputs
    from .report import build_report
    from .report.html import render

    outputs = PendingOutputs(inputs=[args.artifact, args.data])
    outputs.reserve(args.output)
    check_available("matplotlib", "snnc report")
    if args.samples < 1:
        raise ValueError(f"--samples must be >= 1, got {args.samples}")
    q = artifact.load(args.artifact)
    ts = timesteps_option(args.timesteps, q.graph["snnc"].get("timesteps", 32)) if args.timesteps is not None else None
    x, y = load_data_for(q, args.data, n_outputs=q.nodes[output_node(q)]["shape"][0])  # static: its ANN reads no frames
    info = build_report(q, x, y, timesteps=ts, samples=args.samples, encoding=args.encoding, seed=args.seed,
                        artifact=args.artifact, data=args.data, progress=not args.no_progress and sys.stderr.isatty())
    outputs.add(args.output, render(info).encode())
    outputs.commit()
    st = info["stats"]
    emit({"output": args.output, "accuracy": st["accuracy"], "causes": st["causes"], "worst_layer": st["worst_layer"],
          "timesteps": info["sweep"]["timesteps"], "int": info["sweep"]["int"], "energy_nJ": info["sweep"]["energy_nJ"],
          "energy_balance": info["energy"]["balance"], "worst_module": info["modules"].get(st["worst_layer"])})
    print(f"integer SNN {st['accuracy']['int']:.2f}% vs ANN {st['accuracy']['ann']:.2f}% at T={st['T']}; lost to "
          + ", ".join(f"{k} {v:+.2f} pt" for k, v in st["causes"].items())
          + f"; layer introducing most error: {st['worst_layer']}"
          + (f" (from {info['modules'][st['worst_layer']]})" if st["worst_layer"] in info["modules"] else ""))
    print(f"wrote {args.output}")
    return 0


def cmd_export(args) -> int:
    from . import artifact
    from .frontend.nir import nir_bytes
    from .outputs import PendingOutputs

    outputs = PendingOutputs(inputs=[args.artifact])
    outputs.reserve(args.output)
    q = artifact.load(args.artifact)
    outputs.add(args.output, nir_bytes(q, form=args.form, dt=args.dt, strict=args.strict))
    outputs.commit()
    emit({"output": args.output, "format": "nir", "form": args.form, "dt": args.dt})
    print(f"wrote {args.output} (NIR, {args.form} form, dt {args.dt:g})")
    return 0


def cmd_bin_events(args) -> int:
    import io

    import numpy as np

    from .events import bin_file
    from .outputs import PendingOutputs

    outputs = PendingOutputs(inputs=[args.events])
    outputs.reserve(args.output)
    window = None
    if args.window is not None:
        parts = args.window.split(",")
        try:
            window = tuple(float(v) if any(c in v for c in ".eE") else int(v) for v in parts)
        except ValueError:
            window = ()
        if len(window) != 2:
            raise ValueError(f"--window must be T0,T1 like 0,100000, got {args.window!r}")
    x, labels, dropped = bin_file(args.events, args.bins, window)
    buf = io.BytesIO()
    counts = x.astype(np.min_scalar_type(int(x.max(initial=0))))  # exact counts, in the fewest bytes
    np.savez(buf, x=counts, **({} if labels is None else {"y": labels}))
    outputs.add(args.output, buf.getvalue())
    written = outputs.commit()
    events = int(x.sum())
    print(f"binned {len(x)} samples into {args.bins} frames of {x.shape[2:]} ({events} events"
          + (f", {dropped} outside the window dropped" if dropped else "") + ")")
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_sweep(args) -> int:
    from .sweep import parse_grid, print_table, sweep, _is_artifact

    grid = parse_grid(args.grid, _is_artifact(args.model))
    if not args.no_plot:  # before the work, not after it
        check_available("matplotlib", "snnc sweep's accuracy.png (or --no-plot)")
    log = (lambda line: print(line, file=sys.stderr)) if args.json else print
    summary = sweep(args.model, args.data, args.output, grid, calibration=args.calibration,
                    input_shape=args.input_shape, workers=args.workers, batch_size=args.batch_size,
                    plot=not args.no_plot, log=log, ray=args.ray)
    emit(summary)
    if not args.json:
        print_table(summary)
        for path in summary["wrote"]:
            print(f"wrote {path}")
    return 0


def cmd_setup_lava(args) -> int:
    from .backends.lava.environment import main_setup
    emit(main_setup(args.python, args.dir))
    return 0


COMMANDS = {"setup-lava": cmd_setup_lava, "compile": cmd_compile, "export": cmd_export, "simulate": cmd_simulate, "inspect": cmd_inspect, "check": cmd_check,
            "report": cmd_report, "bin-events": cmd_bin_events, "sweep": cmd_sweep}
