"""Keras frontend: a Keras ``.h5`` model file -> IR graph, read with h5py alone (no TensorFlow)."""
from .load import from_keras_h5, to_channels_first

__all__ = ["from_keras_h5", "to_channels_first"]
