"""sim/ann_sharing.py: the calibration's torch ANN reading runs a DenseNet's per-reader conv copies
as one conv each (scaled per channel) and its sums over parts as one conv, with the same values."""
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, os.path.dirname(__file__))
from test_zoo_concat import DenseNet, _bn_stats  # noqa: E402

from snn_compiler.config import CompileConfig  # noqa: E402
from snn_compiler.frontend import from_module  # noqa: E402
from snn_compiler.ir import inputs_of, op_of, ops as O, topo_order  # noqa: E402
from snn_compiler.passes import STRUCTURAL, run_pipeline  # noqa: E402
from snn_compiler.sim import ann_sharing, torch_ann  # noqa: E402
from snn_compiler.sim.emulator import iter_ann  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _structural_densenet():
    torch.manual_seed(0)
    g = from_module(_bn_stats(DenseNet()).eval(), (3, 32, 32))
    run_pipeline(g, CompileConfig(), STRUCTURAL)
    return g


def test_densenet_copies_and_sums_become_fewer_convs_with_the_same_values():
    g = _structural_densenet()
    order = topo_order(g)
    units, inside = ann_sharing.plan(g, order, {n: op_of(g, n) for n in order}, {n: inputs_of(g, n) for n in order},
                                     set())
    scaled = [n for n, u in units.items() if u.base is not None]
    fused = [n for n, u in units.items() if len(u.reads) > 1]
    assert scaled and fused and inside  # the case this exists for is present
    for n in scaled:  # each copy's weight really is its base's, row by row, times its factor
        u, b = units[n], units[units[n].base]
        np.testing.assert_allclose(u.conv.weight, u.factor[:, None, None, None] * b.conv.weight, rtol=0,
                                   atol=1e-9 * np.abs(u.conv.weight).max())
    layers = [n for n in g if O.is_hidden_neuron(op_of(g, n))]
    x = np.random.default_rng(1).uniform(-1, 1, (8, 3, 32, 32))
    got = next(torch_ann.iter_ann(g, x, keep=layers))
    want = next(iter_ann(g, x, keep=layers))
    for n in layers:  # torch_ann's stated tolerance: float32 rounding and summation order
        assert np.abs(got[n] - want[n]).max() <= 1e-4 * (1 + np.abs(want[n]).max()), n


def test_rows_that_are_not_proportional_are_not_shared():
    w = np.arange(24.0).reshape(2, 3, 2, 2) + 1
    assert np.allclose(ann_sharing._factor(w * np.array([2.0, -0.5])[:, None, None, None], w), [2.0, -0.5])
    bent = w.copy()
    bent[1, 0, 0, 0] += 1.0
    assert ann_sharing._factor(bent, w) is None
    assert ann_sharing._factor(w, np.zeros_like(w)) is None  # a zero base row shares only zero rows
