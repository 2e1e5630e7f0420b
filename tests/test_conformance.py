"""Conformance: torch ANN == IR as ANN; float SNN -> ANN as T grows; int8 SNN ~ float SNN.

Errors are mean absolute differences of the network output, divided by the largest |ANN output|
on the batch, so one bound fits every model. Bounds, and why:
- IR as ANN vs torch: float64 numpy vs float32 torch, so 1e-5 relative.
- float SNN vs ANN (max normalisation on the same data, so no activation saturates): a rate over
  T steps is off by at most half a spike per neuron (v_init = theta/2), so the error falls
  roughly as 1/T: below 3% at T=16 and below 0.6% at T=256, and at least 3x smaller at T=256.
- int8 SNN vs float SNN at the same T: 8-bit weights are off by at most 1/254 of the layer's
  largest weight, thresholds and biases by one unit in ~100..100000: below 1.5% at T=64.
"""
import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from snn_compiler.compile import compile_model  # noqa: E402
from snn_compiler.config import CompileConfig  # noqa: E402
from snn_compiler.frontend import from_module  # noqa: E402
from snn_compiler.ir import op_of, output_node  # noqa: E402
from snn_compiler.sim.emulator import run_ann, simulate  # noqa: E402

from models import zoo  # noqa: E402

ZOO = zoo()


@functools.lru_cache(maxsize=None)
def setup(name, n=48):
    model, shape = ZOO[name]
    x = np.random.default_rng(0).random((n,) + shape)
    with torch.no_grad():
        ann = model(torch.from_numpy(x).float()).double().numpy()
    q = compile_model(from_module(model, shape), CompileConfig(norm="max", calibration=x, bits=8))
    return q, x, ann


def snn_output(q, x, mode, T):
    """Output potential per step, in the ANN's units."""
    out = op_of(q, output_node(q))
    scores = simulate(q, x, mode=mode, timesteps=T).scores
    unit = out.scale / (out.threshold if mode == "int" else 1.0)
    return scores * unit / T


@pytest.mark.parametrize("name", sorted(ZOO))
def test_ir_as_ann_matches_torch(name):
    q, x, ann = setup(name)
    scale = np.abs(ann).max()
    np.testing.assert_allclose(run_ann(q, x) / scale, ann / scale, atol=1e-5)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_float_snn_converges_to_ann(name):
    q, x, ann = setup(name)
    scale = np.abs(ann).max()
    err = {T: np.abs(snn_output(q, x, "float", T) - ann).mean() / scale for T in (16, 256)}
    assert err[16] < 0.03 and err[256] < 0.006, err
    assert err[256] < err[16] / 3, err


@pytest.mark.parametrize("name", sorted(ZOO))
def test_int8_snn_agrees_with_float_snn(name):
    q, x, ann = setup(name)
    scale = np.abs(ann).max()
    diff = np.abs(snn_output(q, x, "int", 64) - snn_output(q, x, "float", 64)).mean() / scale
    assert diff < 0.015, diff
