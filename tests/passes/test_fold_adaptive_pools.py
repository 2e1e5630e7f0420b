"""fold_adaptive_pools: an adaptive average pool with uneven windows folds into the Linear that reads it."""
import numpy as np
import pytest

from snn_compiler.config import CompileConfig
from snn_compiler.ir import add_op, new_graph, op_of, verify
from snn_compiler.ir import kernels
from snn_compiler.ir import ops as O
from snn_compiler.passes import fold_adaptive_pools


def pooled_classifier(rng, hw, out, reader="dense"):
    g = new_graph()
    add_op(g, "input", O.Input((3,) + hw))
    add_op(g, "r", O.IF(), ["input"])
    add_op(g, "pool", O.AdaptiveAvgPool2d(output_size=out), ["r"])
    if reader == "dense":
        add_op(g, "flat", O.Flatten(), ["pool"])
        add_op(g, "fc", O.Dense(rng.normal(size=(4, 3 * out[0] * out[1])), rng.normal(size=4)), ["flat"])
        add_op(g, "fc2", O.Dense(rng.normal(size=(4, 3 * out[0] * out[1]))), ["flat"])   # two readers
        add_op(g, "sum", O.Add(), ["fc", "fc2"])
        add_op(g, "output", O.Output(), ["sum"])
    else:
        add_op(g, "conv", O.Conv2d(rng.normal(size=(2, 3, 1, 1))), ["pool"])
        add_op(g, "output", O.Output(), ["conv"])
    verify(g)
    return g


def test_torch_windows_by_hand():
    # 5 inputs into 3 cells: [0, 2), [1, 4), [3, 5) (overlapping); 2 into 6: each input repeated 3 times
    assert kernels.adaptive_windows(5, 3) == [(0, 2), (1, 4), (3, 5)]
    assert kernels.adaptive_windows(2, 6) == [(0, 1)] * 3 + [(1, 2)] * 3


@pytest.mark.parametrize("hw,out", [((5, 5), (3, 3)), ((2, 2), (6, 6)), ((3, 4), (2, 3))])
def test_the_folded_dense_reads_the_pool_input_with_the_same_output(hw, out, evaluate):
    rng = np.random.default_rng(0)
    g = pooled_classifier(rng, hw, out)
    x = rng.random((7, 3) + hw)
    want = evaluate(g, x, all_nodes=True)
    assert fold_adaptive_pools(g, CompileConfig()) is True
    verify(g)
    assert not any(isinstance(op_of(g, n), O.AdaptiveAvgPool2d) for n in g) and "flat" not in g
    got = evaluate(g, x, all_nodes=True)
    for n in ("fc", "fc2", "output"):
        np.testing.assert_allclose(got[n], want[n], rtol=1e-12, atol=1e-12)
    assert fold_adaptive_pools(g, CompileConfig()) is False


def test_a_pool_read_by_anything_else_is_refused_naming_it():
    g = pooled_classifier(np.random.default_rng(1), (5, 5), (3, 3), reader="conv")
    with pytest.raises(ValueError, match=r"adaptive average pool 'pool'.*uneven windows.*feeds 'conv' \(Conv2d\)"):
        fold_adaptive_pools(g, CompileConfig())


def test_the_torch_reading_matches_numpy():
    torch = pytest.importorskip("torch")
    from snn_compiler.sim.torch_ann import TorchKernels
    x = np.random.default_rng(2).random((2, 3, 5, 7))
    k = TorchKernels(torch.float64, torch.device("cpu"))
    got = k.adaptive_avg_pool2d(torch.from_numpy(x), (3, 4)).numpy()
    np.testing.assert_allclose(got, kernels.adaptive_avg_pool2d(x, (3, 4)), rtol=1e-12)
