"""What a command reads besides its model or artifact: DATA.npz shaped for the network's input,
and the run's T (``--timesteps``, or a sequence's own)."""
from __future__ import annotations

import sys
import warnings


def load_data_for(graph, path, **kw):
    """DATA.npz for ``graph``'s input: its shape and declared layout (channels-last data is
    transposed once, said on stderr); a warning when the input layer would clip some values.
    ``sequences=True`` (simulate, check): x may also be a sequence (N, T, *shape)."""
    from .data import load_data
    from .input_range import clipped_input_warning
    from .ir import input_node, op_of
    notes = []
    x, y = load_data(path, graph.nodes[input_node(graph)]["shape"], layout=graph.graph["snnc"].get("input_layout"),
                     notes=notes, **kw)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    clipped = clipped_input_warning(op_of(graph, input_node(graph)), x)  # None before normalisation (compile)
    if clipped:
        warnings.warn(clipped, UserWarning, stacklevel=1)
    return x, y


def data_shape(path) -> tuple:
    """The per-sample shape of DATA.npz's ``x`` (read from the .npy header, not the data)."""
    import zipfile

    import numpy as np
    try:
        with zipfile.ZipFile(path) as z, z.open("x.npy") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape = read(f)[0]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: cannot read the shape of its x ({e}); pass --input-shape") from None
    if len(shape) < 2:
        raise ValueError(f"{path}: x has shape {shape}, not (N, ...) samples; pass --input-shape")
    return tuple(int(d) for d in shape[1:])


def sequence_timesteps(args, q, x, ts):
    """``ts`` for static samples; for a sequence (N, T, *input shape) its own [T], which
    --timesteps may repeat but not contradict (sim.encode.run_timesteps, one rule)."""
    from .ir import input_node
    from .sim.encode import sequence_steps
    T = sequence_steps(q.nodes[input_node(q)]["shape"], x)
    if T is None:
        return ts
    if args.timesteps is not None and ts != [T]:
        raise ValueError(f"--timesteps {args.timesteps}: {args.data} holds sequences of {T} steps per sample, which "
                         f"set T; leave --timesteps out")
    return [T]


def timesteps_option(text, default):
    from .sim import check_timesteps
    try:
        ts = [default] if text is None else [int(t) for t in text.split(",")]  # "" is given: refused, not the default
    except ValueError:
        raise ValueError(f"--timesteps must be T or a comma list of T like 8,16,32, got {text!r}") from None
    try:
        return [check_timesteps(t) for t in ts]
    except ValueError as e:
        raise ValueError(f"--timesteps: {e}") from None
