"""Why snnc does not convert an op, and what to do instead: one table for every frontend, keyed by
torch's module class and aten op names; ONNX op types and Keras names map onto them (:func:`why_onnx`,
:func:`why_keras`). Imports without torch."""
from __future__ import annotations

_NOT_RELU = ("is not a ReLU, and an integrate-and-fire neuron's rate is a ReLU of its input: retrain with "
             "ReLU (or ReLU6, which converts exactly)")
_PRODUCT = "multiplies two activations, and a spiking layer only weighs its input spikes by constant weights"
_PER_SAMPLE = ("normalises each sample by its own statistics (a division by a computed value), which spiking "
               "layers cannot do: use BatchNorm2d, which folds into the weights")
_RECURRENT = ("is a gated recurrent cell (it multiplies activations); a recurrent spiking network is trained "
              "with snn_compiler.nn.LIF layers instead")

# an nn.Module class (its __name__) or an aten op name (no overload, no trailing "_") -> why not, and what instead
WHY = {
    "SiLU": "SiLU (swish) " + _NOT_RELU, "silu": "silu (swish) " + _NOT_RELU,
    "GELU": "GELU " + _NOT_RELU, "gelu": "gelu " + _NOT_RELU,
    "Mish": "Mish " + _NOT_RELU, "mish": "mish " + _NOT_RELU,
    "ELU": "ELU " + _NOT_RELU, "elu": "elu " + _NOT_RELU, "SELU": "SELU " + _NOT_RELU, "selu": "selu " + _NOT_RELU,
    "CELU": "CELU " + _NOT_RELU, "celu": "celu " + _NOT_RELU, "Softplus": "Softplus " + _NOT_RELU,
    "softplus": "softplus " + _NOT_RELU, "LeakyReLU": "LeakyReLU " + _NOT_RELU, "leaky_relu": "leaky_relu " + _NOT_RELU,
    "PReLU": "PReLU " + _NOT_RELU, "Tanh": "Tanh " + _NOT_RELU, "tanh": "tanh " + _NOT_RELU,
    "Sigmoid": "Sigmoid " + _NOT_RELU, "sigmoid": "sigmoid " + _NOT_RELU,
    "Hardswish": "Hardswish (x * relu6(x + 3) / 6) " + _PRODUCT + ": retrain with ReLU6 (MobileNetV2-style blocks)",
    "hardswish": "hardswish (x * relu6(x + 3) / 6) " + _PRODUCT + ": retrain with ReLU6 (MobileNetV2-style blocks)",
    "Hardsigmoid": "Hardsigmoid " + _NOT_RELU, "hardsigmoid": "hardsigmoid " + _NOT_RELU,
    "LayerNorm": "LayerNorm " + _PER_SAMPLE, "layer_norm": "layer_norm " + _PER_SAMPLE,
    "native_layer_norm": "layer_norm " + _PER_SAMPLE, "GroupNorm": "GroupNorm " + _PER_SAMPLE,
    "group_norm": "group_norm " + _PER_SAMPLE, "InstanceNorm2d": "InstanceNorm2d " + _PER_SAMPLE,
    "instance_norm": "instance_norm " + _PER_SAMPLE, "RMSNorm": "RMSNorm " + _PER_SAMPLE,
    "MultiheadAttention": "attention " + _PRODUCT + " (queries by keys, weights by values): no conversion",
    "scaled_dot_product_attention": "attention " + _PRODUCT + " (queries by keys, weights by values): no conversion",
    "LSTM": "LSTM " + _RECURRENT, "lstm": "lstm " + _RECURRENT, "GRU": "GRU " + _RECURRENT, "gru": "gru " + _RECURRENT,
    "RNN": "RNN " + _RECURRENT,
    "Softmax": "softmax normalises by a sum of exponentials: leave it out of the exported model (the read-out's "
               "largest score is the same class)",
    "softmax": "softmax normalises by a sum of exponentials: leave it out of the exported model (the read-out's "
               "largest score is the same class)",
}

# ONNX op type -> the key of the same op above
ONNX = {"Sigmoid": "sigmoid", "Tanh": "tanh", "Elu": "elu", "Selu": "selu", "Celu": "celu", "Softplus": "softplus",
        "LeakyRelu": "leaky_relu", "PRelu": "PReLU", "Gelu": "gelu", "Mish": "mish", "HardSwish": "hardswish",
        "HardSigmoid": "hardsigmoid", "LayerNormalization": "layer_norm", "GroupNormalization": "group_norm",
        "InstanceNormalization": "instance_norm", "RMSNormalization": "RMSNorm", "Softmax": "softmax",
        "LogSoftmax": "softmax", "LSTM": "lstm", "GRU": "gru", "RNN": "RNN",
        "Attention": "scaled_dot_product_attention"}


def why_onnx(op_type: str) -> str:
    """Why an ONNX op is not converted ("" when the table does not say)."""
    return WHY.get(ONNX.get(op_type, ""), "")


# Keras activation or layer class -> the key of the same op above
KERAS = {"swish": "silu", "silu": "silu", "gelu": "gelu", "mish": "mish", "elu": "elu", "selu": "selu",
         "softplus": "softplus", "sigmoid": "sigmoid", "tanh": "tanh", "hard_sigmoid": "hardsigmoid",
         "hard_swish": "hardswish", "hard_silu": "hardswish", "leaky_relu": "leaky_relu", "LeakyReLU": "leaky_relu",
         "PReLU": "PReLU", "ELU": "elu", "LayerNormalization": "layer_norm", "GroupNormalization": "group_norm",
         "MultiHeadAttention": "scaled_dot_product_attention", "Attention": "scaled_dot_product_attention",
         "LSTM": "lstm", "GRU": "gru", "SimpleRNN": "RNN"}


def why_keras(name) -> str:
    """Why a Keras activation (by name) or layer (by class) is not converted ("" when the table does not say)."""
    return WHY.get(KERAS.get(name, ""), "") if isinstance(name, str) else ""
