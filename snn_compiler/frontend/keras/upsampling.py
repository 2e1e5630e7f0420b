"""Keras UpSampling2D (nearest) and Conv2DTranspose, as methods of the Keras lowering
(``lower._Lower``): both become the IR's Conv2d with input dilation (frontend/lowering.py)."""
from __future__ import annotations

import numpy as np

from ...ir import ops as O
from ..lowering import nearest_upsampling_conv, transposed_conv


def up_sampling_2d(self, lay, cfg):
    """Nearest upsampling by whole factors; after a ReLU an IF copy follows (as for ZeroPadding2D)."""
    self.map_input()
    self.weights()
    if cfg.get("interpolation", "nearest") != "nearest":
        self.fail(f"interpolation {cfg.get('interpolation')!r} interpolates with weights that change at the map's "
                  f"borders, which is not one convolution; use 'nearest' (then a conv), or Conv2DTranspose")
    moved(self, lay.name, nearest_upsampling_conv(self.shape[0], self.pairs("size", 2)))


def moved(self, name, conv):
    """Emit ``conv`` (a one-hot conv that moves values: ZeroPadding2D, UpSampling2D), then an IF copy
    where it reads a converted ReLU, so what reads it reads spikes."""
    src = self.g.nodes[self.cur]["op"]
    self.emit(name, conv)
    if O.is_hidden_neuron(src) and src.spike_value is None:
        self.emit(f"{name}.if", O.IF())


def conv_2d_transpose(self, lay, cfg):
    """Keras' kernel is (kH, kW, filters, in); 'valid' pads nothing, 'same' makes the output stride times
    the input (the k - stride rows it drops split evenly, else refused: the IR pads symmetrically)."""
    self.map_input()
    w = self.weights(["kernel"] + (["bias"] if cfg.get("use_bias", True) else []))
    k = w["kernel"]
    if k.ndim != 4 or k.shape[3] != self.shape[0]:
        self.fail(f"kernel of shape {k.shape} is not (kH, kW, filters, {self.shape[0]})")
    if cfg.get("output_padding") is not None:
        self.fail("output_padding adds a row/column at the bottom/right only; the IR pads symmetrically")
    stride, dil = self.pairs("strides", 1), self.pairs("dilation_rate", 1)
    kernel = (int(k.shape[0]), int(k.shape[1]))
    pad = (0, 0)
    if cfg.get("padding", "valid") == "same":
        drop = [dil[i] * (kernel[i] - 1) + 1 - stride[i] for i in range(2)]
        if any(d < 0 or d % 2 for d in drop):
            self.fail(f"padding='same' with kernel {kernel} and strides {stride} drops {drop} rows/columns, not an "
                      f"even split; use kernel = strides + an even number, or padding='valid'")
        pad = (drop[0] // 2, drop[1] // 2)
    self.emit(lay.name, transposed_conv(self, np.ascontiguousarray(k.transpose(3, 2, 0, 1)), w.get("bias"), stride,
                                        pad, dil, 1))
    self.activation(cfg.get("activation"), f"{lay.name}.relu")
