"""An IF CNN on event frames, written in NIR as sinabs writes it (Conv2d -> IF -> SumPool2d -> Flatten ->
Affine -> IF), run by snnc on the sequence (N, T, 2, H, W) and by sinabs 3.1 (``from_nir``, frames as
(N*T, C, H, W), batch-major) where sinabs is installed (``bash benchmarks/setup_peers.sh --all``).

sinabs builds NIR's IF as its IAFSqueeze with its own hardware's conventions, which NIR's IF does
not have: several spikes a step (MultiSpike), reset by subtraction and a membrane clipped at
-threshold. Set to NIR's IF (one spike a step, reset to 0, no clip), sinabs's simulation and
snnc's float SNN give the same spikes in every layer."""
import warnings

import numpy as np
import pytest

nir = pytest.importorskip("nir")

from snn_compiler.compile import compile_model  # noqa: E402
from snn_compiler.config import CompileConfig  # noqa: E402
from snn_compiler.frontend.nir import from_nir  # noqa: E402
from snn_compiler.sim.emulator import simulate  # noqa: E402

C, H, T = 2, 12, 20


def _if_cnn(seed=0):
    rng = np.random.default_rng(seed)
    conv = nir.Conv2d(input_shape=(H, H), weight=rng.normal(0, 0.5, (4, C, 3, 3)), stride=1, padding=1, dilation=1,
                      groups=1, bias=np.zeros(4))
    nodes = {"input": nir.Input(input_type=np.array([C, H, H])), "conv": conv,
             "iaf": nir.IF(r=np.ones((4, H, H)), v_threshold=np.ones((4, H, H))),
             "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
             "flat": nir.Flatten(input_type={"input": np.array([4, H // 2, H // 2])}, start_dim=0, end_dim=-1),
             "fc": nir.Affine(weight=rng.normal(0, 0.3, (5, 4 * (H // 2) ** 2)), bias=np.zeros(5)),
             "out": nir.IF(r=np.ones(5), v_threshold=np.ones(5)), "output": nir.Output(output_type=np.array([5]))}
    order = ["input", "conv", "iaf", "pool", "flat", "fc", "out", "output"]
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order, order[1:])), type_check=False)


def _frames(n, seed=1):
    return (np.random.default_rng(seed).random((n, T, C, H, H)) < 0.15).astype(np.float32)


def _sinabs_counts(ng, x):
    torch = pytest.importorskip("torch")
    sinabs = pytest.importorskip("sinabs")
    from sinabs.activation import MembraneReset, SingleSpike
    n = len(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = sinabs.from_nir(ng, batch_size=n)
    layers = [m for m in net.modules() if isinstance(m, sinabs.layers.IAF)]
    for m in layers:  # NIR's IF (see the module docstring)
        m.spike_fn, m.reset_fn, m.min_v_mem = SingleSpike, MembraneReset(), None
    got = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: got.__setitem__(k, o.detach().numpy().copy()))
             for k, m in zip(("iaf", "out"), layers)]
    with torch.no_grad():
        net(torch.from_numpy(x.reshape((n * T,) + x.shape[2:])))
    for h in hooks:
        h.remove()
    return {k: v.reshape((n, T) + v.shape[1:]).sum(axis=1) for k, v in got.items()}


def test_sinabs_and_snnc_give_the_same_spikes_on_event_frames():
    ng, x = _if_cnn(), _frames(16)
    ref = _sinabs_counts(ng, x)
    q = compile_model(from_nir(ng, dt=1.0), CompileConfig(bits=8, calibration=x.reshape((-1, C, H, H))[:256],
                                                            timesteps=T))
    fl = simulate(q, x, mode="float", readout="count", record=True)
    assert np.array_equal(fl.counts["iaf"], ref["iaf"]) and np.array_equal(fl.scores, ref["out"])
    assert ref["iaf"].sum() > 0 and ref["out"].sum() > 0
    it = simulate(q, x, mode="int", readout="count")
    assert np.mean(np.argmax(it.scores, 1) == np.argmax(ref["out"], 1)) >= 0.85
