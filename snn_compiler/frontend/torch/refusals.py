"""What the torch frontend says about an op it has no handler for: the layer it belongs to, why snnc
does not convert it and what to do instead where something can be done, and the list of what snnc
lowers, read from the handler table (so a new handler appears in it by itself)."""
from __future__ import annotations

from ..unconverted import WHY
from .context import module_stack

# handler name -> the layer it lowers, as a user writes it (None: internal, never listed); a
# handler missing here is listed under its own name
LOWERS = {
    "conv2d": "Conv2d", "convolution": "Conv2d", "linear": "Linear", "addmm": "Linear", "mm": "Linear",
    "batch_norm": "BatchNorm2d", "native_batch_norm_no_training": "BatchNorm2d", "relu": "ReLU",
    "relu6": "ReLU6", "hardtanh": "Hardtanh(0, a)", "clamp": "clamp(x, 0, a)", "clamp_min": "clamp_min(x, 0)",
    "clamp_max": "clamp_max after a ReLU", "lif": "snn_compiler.nn.LIF", "cubalif": "snn_compiler.nn.CubaLIF",
    "rcubalif": "snn_compiler.nn.CubaLIF(recurrent=N)",
    "qcfs": "snn_compiler.nn.QCFS",
    "avg_pool2d": "AvgPool2d", "adaptive_avg_pool2d": "AdaptiveAvgPool2d", "mean_dim": "mean over H and W",
    "max_pool2d": "MaxPool2d", "max_pool2d_with_indices": "MaxPool2d",
    "adaptive_max_pool2d": "AdaptiveMaxPool2d", "conv1d": "Conv1d", "avg_pool1d": "AvgPool1d",
    "max_pool1d": "MaxPool1d", "max_pool1d_with_indices": "MaxPool1d", "adaptive_avg_pool1d": "AdaptiveAvgPool1d",
    "adaptive_max_pool1d": "AdaptiveMaxPool1d",
    "flatten": "flatten", "reshape": "flatten-like view/reshape", "add": "residual add",
    "cat": "torch.cat on channels", "chunk": "chunk/split/slice of channels", "split": "chunk/split/slice of channels",
    "split_with_sizes": "chunk/split/slice of channels", "slice_": "chunk/split/slice of channels",
    "narrow": "chunk/split/slice of channels", "index_select": "chunk/split/slice of channels",
    "channel_shuffle": "channel shuffle", "transpose": "channel shuffle", "permute": "channel shuffle",
    "pad": "zero padding (F.pad)", "conv_transpose2d": "ConvTranspose2d", "nearest": "Upsample (nearest)",
    "interpolating": None,  # refuses bilinear/bicubic with its reason
    "dropout": "Dropout",
    "identity": "clone/contiguous/detach", "cast": "float casts", "assert_metadata": None, "shape_query": None,
}

def lowered_layers(handlers) -> str:
    """What snnc lowers, in handler-table order, each layer once."""
    names = []
    for h in handlers.values():
        name = LOWERS.get(h.__name__, h.__name__)
        if name is not None and name not in names:
            names.append(name)
    return ", ".join(names)


def _op_name(target) -> str:
    name = getattr(target, "__name__", str(target)).split(".")[0]  # hardswish_.default -> hardswish_
    return name[:-1] if name.endswith("_") and not name.endswith("__") else name


def why_not(node) -> str:
    """Why ``node``'s op is not converted: from the innermost module that snnc knows it cannot convert
    (an attention block's transposes are attention), else from the op itself; "" when neither says."""
    for _, cls in reversed(module_stack(node)):
        short = cls.rsplit(".", 1)[-1]
        if short in WHY:  # the message's label names the path and class already
            return WHY[short]
    name = _op_name(node.target)
    return WHY.get(name, "")


def unsupported_message(node, handlers) -> str:
    why = why_not(node)
    return f"unsupported op{': ' + why if why else ''} (snnc lowers {lowered_layers(handlers)})"
