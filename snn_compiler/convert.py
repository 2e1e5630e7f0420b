"""One call from a trained model to a runnable SNN: ``snn_compiler.convert``.

    snn = snn_compiler.convert(model, calibration_data, timesteps=16, percentile=99.9, bits=8)
    snn.run(x)                # (N, outputs) output spike counts over the timesteps
    snn.run(x_seq)            # a sequence (N, T, *input shape), one frame per step, runs T steps
    snn.classify(x)           # (N,) predicted classes
    snn.accuracy(x, y)        # fraction correct
    snn.save("net.snnc")      # the artifact `snnc simulate` / `snnc inspect` read
    snn.run(x, progress=False)  # runs draw a progress bar when stderr is a terminal; False: never
    snn                       # a readable per-layer summary; snn.graph is the compiled IR

``model``: an ``nn.Module`` or a model file (as ``snnc compile`` reads it); numpy arrays and
torch tensors are both accepted for data. ``scale_factors`` multiplies chosen layers' activation
scales (ANNarchy's ``scale_factor``): a list (one per neuron layer, in order) or a dict by layer
name or index; a factor > 1 lowers the layer's rates (less clipping, more quantization error).

A module still in training mode (``model.train()``, the state right after a training loop) is
converted as ``model.eval()`` would run it, BatchNorm with its running statistics and no
dropout, since an SNN has no batch to normalise over; a warning says so, and the module's own
mode is left as it was (training stays True), so a training loop can go on. The CLI reads model
files, which are saved after ``model.eval()``: one saved in training mode is refused.
"""
from __future__ import annotations

from typing import Optional

import networkx as nx
import numpy as np

from . import artifact
from .compile import compile_model
from .config import CompileConfig
from .progress import wanted as progress_wanted
from .sim.emulator import simulate


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


_BARS = ("reference", "float", "lava")   # the built-in backends that draw a progress bar


class SNN:
    """A compiled integer SNN and the settings it runs with (see the module docstring)."""

    def __init__(self, graph, timesteps: int = 16, readout: str = "membrane", engine: str = "auto",
                 progress: Optional[bool] = None):
        self.graph, self.timesteps, self.readout, self.engine = graph, timesteps, readout, engine
        # None: a progress bar on runs when stderr is a terminal; True/False: always/never (see
        # progress.wanted); each call's progress= overrides it
        progress_wanted(progress)
        self.progress = progress

    @classmethod
    def load(cls, path, **kw) -> "SNN":
        graph = artifact.load(path)
        return cls(graph, timesteps=kw.pop("timesteps", graph.graph["snnc"].get("timesteps", 16)), **kw)

    @property
    def encoding(self) -> str:
        """The default input encoding: pso for a network compiled with its gain, else constant."""
        return "pso" if self.graph.graph["snnc"].get("input_gain", 1) > 1 else "constant"

    def _sim(self, x, readout, encoding=None, timesteps=None, mode="int", backend=None, **kw):
        # None means "the SNN's own" (a sequence's own T); any value given (0 included) goes to the
        # run, which checks it (and refuses one that contradicts a sequence's T)
        x = _numpy(x)
        asked = kw.pop("progress", None)
        show = progress_wanted(self.progress if asked is None else asked)
        if timesteps is None and not self._is_sequence(x):
            timesteps = self.timesteps
        common = dict(timesteps=timesteps,
                      encoding=self.encoding if encoding is None else encoding, readout=readout)
        if backend is None:
            return simulate(self.graph, x, mode=mode, engine=self.engine if mode == "int" else "auto",
                            progress=show, **common, **kw)
        if mode != "int":
            raise ValueError(f"give backend= or mode=, not both (backend {backend!r}, mode {mode!r})")
        from .targets import get_backend
        run = get_backend(backend)  # an unknown name is refused, listing the available ones
        if backend == "reference":
            kw.setdefault("engine", self.engine)
        if backend in _BARS:   # a plugin's backend may not take progress=
            kw["progress"] = show
        return run(self.graph, x, **common, **kw)

    def _is_sequence(self, x) -> bool:
        from .ir import input_node, op_of
        from .sim.encode import is_sequence
        return is_sequence(op_of(self.graph, input_node(self.graph)), x)

    def run(self, x, encoding: Optional[str] = None, timesteps: Optional[int] = None, **kw) -> np.ndarray:
        """Output spike counts (N, outputs) over ``timesteps`` (default: the compile's; a sequence
        ``x`` (N, T, *input shape), one frame per step, runs its own T).
        ``backend=`` a backend name (reference, float, lava, ...; default the reference engine)."""
        if kw.get("backend") == "ann":
            raise ValueError("run() returns output spike counts and the ann backend has none: use classify() or "
                             "accuracy() with backend='ann'")
        return self._sim(x, "count", encoding, timesteps, **kw).scores.astype(np.int64)

    def classify(self, x, encoding: Optional[str] = None, timesteps: Optional[int] = None, **kw) -> np.ndarray:
        """Predicted classes (N,) under this SNN's read-out; ``backend=`` any backend name (reference,
        float, ann: the network read as an ANN, lava, ...), as ``snnc simulate --backend`` takes."""
        return self._sim(x, self.readout, encoding, timesteps, **kw).predictions

    def accuracy(self, x, y, **kw) -> float:
        """Fraction of ``x`` classified as ``y`` (keywords as :meth:`classify`: ``backend="ann"`` ...)."""
        return float(np.mean(self.classify(x, **kw) == _numpy(y).reshape(-1)))

    def save(self, path) -> None:
        artifact.save(self.graph, path)

    def summary(self) -> str:
        from .summary import layer_table, summary
        return layer_table(summary(self.graph))

    def __repr__(self) -> str:
        meta = self.graph.graph["snnc"]
        return (f"<SNN target={meta.get('target')} bits={meta.get('bits')} timesteps={self.timesteps} "
                f"readout={self.readout}>\n{self.summary()}")


def convert(model, calibration_data=None, *, timesteps: Optional[int] = None, percentile: Optional[float] = 99.9,
            norm: Optional[str] = None, bits: Optional[int] = None, target: str = "reference",
            scale_factors=None, input_shape=None, readout: Optional[str] = None, progress: Optional[bool] = None,
            **options) -> SNN:
    """Compile ``model`` into an :class:`SNN` (see the module docstring).

    ``timesteps`` and ``readout`` default to the model's ``num_timesteps`` and ``snn_readout``
    attributes (set by ``snn_compiler.models``; ``count`` for a spiking net), else 16 and membrane.

    Normalization: ``norm`` if given (``"max"``, ``"percentile:P"``, ``"scale:F"``, ``"model"``),
    else the ``percentile`` of the calibration activations, or ``"model"`` (data-free, with a
    warning) without calibration data. ``input_shape`` defaults to the calibration data's.
    ``options``: a model file's load options (``dt`` and ``discretization`` for a NIR file,
    ``allow_pickle``, ``trust_code``: :func:`snn_compiler.frontend.load_file`), else any other
    :class:`CompileConfig` field (``reset``, ``v_init``, ``input_bits``, ``profile``, ``chips``, ...).
    ``progress``: the SNN's runs draw a progress bar on stderr when it is a terminal (None, the
    default), always (True) or never (False); each run's ``progress=`` overrides it.
    """
    from .targets import get_target
    model_t, model_r = getattr(model, "num_timesteps", None), getattr(model, "snn_readout", None)
    if timesteps is None:
        timesteps = model_t if isinstance(model_t, int) else 16
    if readout is None:
        readout = model_r if isinstance(model_r, str) else "membrane"
    calib = None if calibration_data is None else _numpy(calibration_data).astype(np.float64, copy=False)
    if input_shape is None and calib is not None:
        input_shape = tuple(calib.shape[1:])
    from .frontend.files import LOAD_OPTIONS  # a model file's options (dt for NIR, ...), not the compile's
    graph = _lower(model, input_shape, {k: options.pop(k) for k in LOAD_OPTIONS if k in options})
    if norm is None and calib is not None and percentile is not None:
        norm = f"percentile:{percentile:g}"
    tgt = get_target(target)
    config = CompileConfig(bits=tgt.weight_bits(bits), norm=norm, calibration=calib, timesteps=timesteps,
                           target=target, layer_factors=_factors(scale_factors), **options)
    progress_wanted(progress)   # a bad value refused before the compile, not at the first run
    return SNN(compile_model(graph, config, target=tgt), timesteps=timesteps, readout=readout, progress=progress)


def _lower(model, input_shape, load: dict):
    training = [n for n, m in model.named_modules() if getattr(m, "training", False)] \
        if hasattr(model, "named_modules") and not hasattr(model, "code") else []   # a ScriptModule has code
    if training:
        import warnings
        warnings.warn(f"convert: the model is in training mode ({len(training)} module(s), e.g. "
                      f"{training[0] or type(model).__name__!r}); it is converted as in eval mode (BatchNorm running "
                      "statistics, no dropout), as model.eval() would run it; the model itself stays in training "
                      "mode", stacklevel=3)
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        from .frontend import load_file
        return load_file(model, input_shape=input_shape, **load)
    if load:
        raise ValueError(f"{', '.join(load)} apply to model files; the model here is a {type(model).__name__}")
    if isinstance(model, nx.DiGraph):  # already lowered to the IR
        return model
    from .frontend import from_module
    if input_shape is None:
        raise ValueError("convert needs calibration_data or input_shape to know the model's input shape")
    return from_module(model, tuple(input_shape))


def _factors(scale_factors) -> dict:
    """A list (one per neuron layer, in order) or a dict (layer name or index) -> {key: factor}."""
    if scale_factors is None:
        return {}
    if isinstance(scale_factors, dict):
        return dict(scale_factors)
    return {i: f for i, f in enumerate(scale_factors)}
