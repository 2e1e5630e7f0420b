"""Reading a Keras .h5 file with h5py: the model config (JSON, bounded nesting) and each layer's
weights, stored in the file itself (soft and external links, external and virtual datasets are
refused, so a file cannot make snnc read other files), numeric, finite and of a sane size."""
from __future__ import annotations

import json
from typing import Optional

import numpy as np

from ..errors import FrontendError

MAX_WEIGHT_ELEMENTS = 1 << 28  # one weight array (2 GiB as float64): far above any network snnc maps
MAX_CONFIG_DEPTH = 64          # nesting of the model config's JSON; Keras writes about 10 levels
_ALIASES = {"Convolution2D": "Conv2D", "AvgPool2D": "AveragePooling2D", "MaxPool2D": "MaxPooling2D",
            "GlobalAvgPool2D": "GlobalAveragePooling2D"}


def _text(v) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray) and v.shape == ():
        return _text(v.item())
    return str(v)


def _names(attr) -> list:
    """A ``weight_names`` / ``layer_names`` attribute as a list of str (an empty one is stored as a
    float64 array of length 0)."""
    if attr is None:
        return []
    return [_text(v) for v in np.asarray(attr).reshape(-1)] if np.asarray(attr).size else []


def _depth(v) -> int:
    """How deeply the JSON value ``v`` nests lists and dicts (iteratively: no recursion limit)."""
    deepest, todo = 0, [(v, 1)]
    while todo:
        x, d = todo.pop()
        if isinstance(x, (dict, list)):
            deepest = max(deepest, d)
            if d <= MAX_CONFIG_DEPTH:  # past the limit the answer is known
                todo.extend((y, d + 1) for y in (x.values() if isinstance(x, dict) else x))
    return deepest


class _Reader:
    """The open file: messages name it; weights are read per layer."""

    def __init__(self, f, where: str):
        self.f = f
        self.where = where

    def fail(self, msg: str):
        raise FrontendError(f"{self.where}: {msg}")

    def config(self) -> dict:
        raw = self.f.attrs.get("model_config")
        if raw is None:
            if "layers" in self.f or "model_weights" not in self.f and "layer_names" in self.f.attrs:
                self.fail("holds weights only (model.save_weights), not a model: it has no architecture "
                          "(model_config). Save the whole model with model.save('model.h5')")
            self.fail("is an HDF5 file but not a Keras model (no model_config attribute); snnc reads Keras "
                      "files written by model.save('model.h5')")
        try:
            cfg = json.loads(_text(raw))
        except RecursionError:
            self.fail(f"its model_config nests deeper than a Keras model config does (limit {MAX_CONFIG_DEPTH} "
                      f"levels); not a Keras model snnc reads")
        except (ValueError, UnicodeDecodeError) as e:
            self.fail(f"its model_config is not valid JSON ({e})")
        depth = _depth(cfg)
        if depth > MAX_CONFIG_DEPTH:
            self.fail(f"its model_config nests {depth} levels deep, more than a Keras model config does (limit "
                      f"{MAX_CONFIG_DEPTH}); not a Keras model snnc reads")
        if not isinstance(cfg, dict) or "class_name" not in cfg or "config" not in cfg:
            self.fail("its model_config is not a Keras model config (no class_name/config)")
        return cfg

    def version(self) -> Optional[str]:
        mw = self._child(self.f, "model_weights", "model_weights")
        for holder in (self.f.attrs, mw.attrs if mw is not None else {}):
            if "keras_version" in holder:
                return _text(holder["keras_version"])
        return None

    def _child(self, parent, name: str, what: str):
        """``parent[name]`` when it is stored in this file (a hard link), None when absent. Soft and
        external links are refused, so a file cannot make snnc read other files."""
        import h5py
        link = parent.get(name, getlink=True)
        if link is None:
            return None
        if not isinstance(link, h5py.HardLink):
            self.fail(f"{what} is a {type(link).__name__} to another place or file; snnc reads models stored "
                      f"in the file itself")
        return parent[name]

    def _dataset(self, grp, full: str, layer):
        """The dataset ``grp/full``, its data stored in this file, of a sane size."""
        import h5py
        node = grp
        for part in full.split("/"):
            node = self._child(node, part, f"{layer}: weight {full!r}") if isinstance(node, h5py.Group) else None
            if node is None:
                self.fail(f"{layer}: weight {full!r} is listed but missing from model_weights/{layer.name}")
        if not isinstance(node, h5py.Dataset):
            self.fail(f"{layer}: weight {full!r} is not a dataset")
        if node.external or node.is_virtual:
            self.fail(f"{layer}: weight {full!r} keeps its data outside the file (external or virtual dataset); "
                      f"snnc reads weights stored in the file itself")
        if node.size > MAX_WEIGHT_ELEMENTS:
            self.fail(f"{layer}: weight {full!r} has {node.size:,} elements, more than snnc reads "
                      f"({MAX_WEIGHT_ELEMENTS:,})")
        return node

    def weights(self, layer: "_Layer") -> dict:
        """{short name: float64 array} of ``layer``'s weights (``kernel``, ``bias``, ...)."""
        mw = self._child(self.f, "model_weights", "model_weights")
        if mw is None:
            self.fail("has no model_weights group, so no weights; snnc reads files written by model.save('model.h5')")
        grp = self._child(mw, layer.name, f"model_weights/{layer.name}")
        if grp is None:
            return {}
        names = _names(grp.attrs.get("weight_names"))
        if not names and "weight_names" not in grp.attrs:  # not written by Keras: every dataset, in order
            names = []
            grp.visititems(lambda n, o: names.append(n) if hasattr(o, "shape") else None)  # hard links only
        out = {}
        for full in names:
            ds = self._dataset(grp, full, layer)
            short = full.rsplit("/", 1)[-1].split(":", 1)[0]
            if short in out:
                self.fail(f"{layer}: two weights are named {short!r}")
            arr = np.asarray(ds[()])
            if arr.dtype.kind not in "fiu":
                self.fail(f"{layer}: weight {full!r} is not numeric ({arr.dtype})")
            arr = arr.astype(np.float64)
            if not np.all(np.isfinite(arr)):
                self.fail(f"{layer}: weight {full!r} holds NaN or infinite values")
            out[short] = arr
        return out


class _Layer:
    def __init__(self, entry: dict):
        self.cls = str(entry.get("class_name"))
        self.cls = _ALIASES.get(self.cls, self.cls)
        self.config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
        self.name = str(self.config.get("name", entry.get("name", "?")))
        self.entry = entry
        self.inputs = None  # the layers it reads, in a Functional model; None: the layer before it

    def __str__(self):
        return f"layer {self.name!r} ({self.cls})"

    def data_format(self) -> str:
        """The layer's data_format; Keras writes null for its global default, channels_last (an empty
        or other string is the layer's own value: checked, not replaced)."""
        fmt = self.config.get("data_format")
        return "channels_last" if fmt is None else fmt
