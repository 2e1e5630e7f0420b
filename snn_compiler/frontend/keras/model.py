"""The model's layers in order, from its config: Sequential models, and Functional models whose layers
each read one layer, except Add and Concatenate, which join branches (shared layers, several inputs or
outputs are refused); its layout and input shape."""
from __future__ import annotations

from typing import Optional

from ..errors import NeedsInputShape
from .read import _Layer, _Reader

LAYOUTS = ("channels_last", "channels_first")
MERGES = ("Add", "Concatenate")  # the layers that read several layers
SPATIAL = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "ZeroPadding2D", "AveragePooling2D", "MaxPooling2D",
           "GlobalAveragePooling2D")


def _history(v, found):
    """Names of the layers whose outputs ``v`` (a Keras 2 or 3 inbound-node structure) refers to."""
    if isinstance(v, dict):
        if v.get("class_name") == "__keras_tensor__":
            hist = (v.get("config") or {}).get("keras_history")
            if isinstance(hist, list) and hist:
                found.append(str(hist[0]))
            return
        for x in v.values():
            _history(x, found)
    elif isinstance(v, list):
        if len(v) >= 3 and isinstance(v[0], str) and isinstance(v[1], int) and isinstance(v[2], int):
            found.append(v[0])  # Keras 2: [layer name, node index, tensor index, kwargs]
            return
        for x in v:
            _history(x, found)


def _endpoints(v) -> list:
    """``input_layers`` / ``output_layers``: [[name, node, tensor], ...] or one [name, node, tensor]."""
    if isinstance(v, list) and len(v) == 3 and isinstance(v[0], str):
        return [v[0]]
    if isinstance(v, dict):  # a nested structure of endpoints
        return [n for x in v.values() for n in _endpoints(x)]
    return [x[0] for x in v] if isinstance(v, list) else []


def _graph(rd: _Reader, cfg: dict) -> list:
    """The layers of a Functional model, each after the layers it reads (``inputs``: their names, in
    order); refuse anything but one input and one output, each layer called once, every layer on a
    path from the input to the output."""
    entries = cfg.get("layers") or []
    layers = {}
    for e in entries:
        lay = _Layer(e)
        lay.name = str(e.get("name", lay.name))
        layers[lay.name] = lay
    ins, outs = _endpoints(cfg.get("input_layers")), _endpoints(cfg.get("output_layers"))
    if len(ins) != 1 or len(outs) != 1:
        rd.fail(f"the model has {len(ins)} inputs and {len(outs)} outputs; snnc reads models with one input "
                f"and one output")
    for name, lay in layers.items():
        nodes = lay.entry.get("inbound_nodes") or []
        if len(nodes) > 1:
            rd.fail(f"{lay} is called {len(nodes)} times (a shared layer); snnc reads Functional models whose "
                    f"layers are each called once")
        found = []
        _history(nodes, found)
        if lay.cls != "InputLayer" and (len(found) < 2 if lay.cls in MERGES else len(found) != 1):
            rd.fail(f"{lay} takes {len(found)} inputs ({', '.join(found) or 'none'}); snnc reads layers of one "
                    f"input, and joins branches with {' and '.join(MERGES)} (two or more)")
        lay.inputs = found
    order, state = [], {}  # depth first from the output, without recursion (deep models)
    stack = [(outs[0], False)]
    while stack:
        name, finished = stack.pop()
        if finished:
            state[name] = "done"
            order.append(name)  # after every layer it reads
            continue
        if name not in layers:
            rd.fail(f"the model config refers to a layer {name!r} it does not define")
        if state.get(name) == "open":  # expanded, not finished: on the current path
            rd.fail("the model config's layers form a cycle")
        if name in state:
            continue
        state[name] = "open"
        stack.append((name, True))
        stack.extend((src, False) for src in reversed(layers[name].inputs))
    if order[0] != ins[0] or sum(layers[n].cls == "InputLayer" for n in order) != 1:
        rd.fail(f"the model's output does not depend on its input {ins[0]!r} alone")
    extra = [n for n in layers if n not in state]
    if extra:
        rd.fail(f"layers {', '.join(extra)} are not on a path from the input to the output; snnc reads the "
                f"layers the output depends on, all of them")
    return [layers[n] for n in order]


def _layers(rd: _Reader, cfg: dict) -> tuple:
    """(kind, [layers in order], model config) of the top-level model."""
    kind, inner = str(cfg["class_name"]), cfg["config"]
    if kind == "Sequential":
        entries = inner if isinstance(inner, list) else inner.get("layers")  # Keras <= 2.2: a plain list
        if not isinstance(entries, list):
            rd.fail("its Sequential config has no list of layers")
        return kind, [_Layer(e) for e in entries if isinstance(e, dict)], (inner if isinstance(inner, dict) else {})
    if kind in ("Functional", "Model"):
        return kind, _graph(rd, inner), inner
    rd.fail(f"holds a {kind} model; snnc reads Sequential and Functional models")


def _declared_shape(layers, model_cfg) -> Optional[list]:
    """The input shape as Keras declares it (batch axis excluded; None for a free size)."""
    for lay in layers:
        for key in ("batch_shape", "batch_input_shape"):
            if isinstance(lay.config.get(key), list):
                return list(lay.config[key][1:])
        if lay.cls == "InputLayer" and isinstance(lay.config.get("input_shape"), list):
            return list(lay.config["input_shape"])
        if lay.cls != "InputLayer":
            break
    b = model_cfg.get("build_input_shape")
    if isinstance(b, list) and b and not isinstance(b[0], list):
        return list(b[1:])
    return None


def _layout(rd, layers) -> str:
    for lay in layers:
        if lay.cls in SPATIAL:
            fmt = lay.data_format()
            if fmt not in LAYOUTS:
                rd.fail(f"{lay}: data_format {fmt!r} is not one of {', '.join(LAYOUTS)}")
            return fmt
    return "channels_last"  # Keras' default image_data_format


def _input_shape(rd, declared, layout, input_shape) -> tuple:
    """(IR input shape, Keras input shape). An (H, W) input without a channel axis becomes (1, H, W)."""
    if declared is not None and len(declared) not in (1, 2, 3):
        rd.fail(f"takes inputs of shape {tuple(declared)}; snnc reads vector (F,) and image inputs")
    if declared is None:
        if input_shape is None:
            raise NeedsInputShape(f"{rd.where}: the model config records no input shape: {NeedsInputShape.HOW}")
        ir_shape = [None] * len(tuple(input_shape))
    elif len(declared) == 3 and layout == "channels_last":
        ir_shape = [declared[2], declared[0], declared[1]]
    elif len(declared) == 2:
        ir_shape = [1] + list(declared)
    else:
        ir_shape = list(declared)
    if input_shape is not None:
        given = tuple(int(d) for d in input_shape)
        if len(given) != len(ir_shape) or any(d is not None and d != e for d, e in zip(ir_shape, given)):
            shown = tuple("?" if d is None else d for d in ir_shape)
            rd.fail(f"input_shape {given} does not match the model's input {shown}"
                    f"{' (C, H, W)' if len(ir_shape) == 3 else ''}")
        ir_shape = list(given)
    if any(d is None for d in ir_shape):
        raise NeedsInputShape(f"{rd.where}: the model's input {tuple(declared)} has free sizes: {NeedsInputShape.HOW}")
    if any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in ir_shape):
        rd.fail(f"input shape {tuple(declared)} is not a shape of positive sizes")
    ir_shape = tuple(ir_shape)
    if declared is not None and len(declared) == 2:
        keras_shape = ir_shape[1:]
    elif len(ir_shape) == 3 and layout == "channels_last":
        keras_shape = (ir_shape[1], ir_shape[2], ir_shape[0])
    else:
        keras_shape = ir_shape
    return ir_shape, keras_shape
