"""The event-driven numba engine and the step-by-step numpy engine agree bit for bit."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.ir import add_op, new_graph, verify
from snn_compiler.ir import ops as O
from snn_compiler.sim import fast
from snn_compiler.sim.emulator import simulate
from snn_compiler.sim.encode import SEQUENCE_ENCODINGS

from builders import int_chain
from engine_runs import numba_in_chunks

METHODS = ("auto", "scatter", "product")  # how the numba engine's weighted ops run (fast.METHOD)

pytestmark = pytest.mark.skipif(not fast.available(), reason="numba is not installed")


def conv_net(rng, stride, padding, dilation, groups):
    g = new_graph()
    add_op(g, "in", O.Input((4, 9, 9)))
    add_op(g, "c1", O.Conv2d(rng.normal(size=(6, 4 // groups, 3, 3)), rng.normal(size=6), stride=stride,
                             padding=padding, dilation=dilation, groups=groups), ["in"])
    add_op(g, "r1", O.IF(), ["c1"])
    add_op(g, "c2", O.Conv2d(rng.normal(size=(6, 6 // groups, 2, 2)), None, groups=groups), ["r1"])
    add_op(g, "r2", O.IF(), ["c2"])
    add_op(g, "pool", O.AvgPool2d((2, 2), (2, 2)), ["r2"])
    add_op(g, "f", O.Flatten(), ["pool"])
    add_op(g, "fc", O.Dense(rng.normal(size=(5, 6 * int(np.prod(_hw(stride, padding, dilation)))))), ["f"])
    add_op(g, "out", O.Output(), ["fc"])
    return g


def _hw(stride, padding, dilation):
    h, w = ((9 + 2 * padding[i] - dilation[i] * 2 - 1) // stride[i] + 1 for i in range(2))
    return ((h - 1) // 2, (w - 1) // 2)


def residual_net(rng):
    g = new_graph()
    add_op(g, "in", O.Input((12,)))
    add_op(g, "fc1", O.Dense(rng.normal(size=(8, 12)), rng.normal(size=8)), ["in"])
    add_op(g, "r1", O.IF(), ["fc1"])
    add_op(g, "fc2", O.Dense(rng.normal(size=(8, 8))), ["r1"])
    add_op(g, "add", O.Add(), ["fc2", "r1"])
    add_op(g, "r2", O.IF(), ["add"])
    add_op(g, "fc3", O.Dense(rng.normal(size=(3, 8)), rng.normal(size=3)), ["r2"])
    add_op(g, "out", O.Output(), ["fc3"])
    return g


CASES = [((1, 1), (1, 1), (1, 1), 1), ((2, 2), (0, 0), (1, 1), 1), ((1, 1), (2, 2), (2, 2), 2), ((2, 1), (1, 0), (1, 1), 2)]


@pytest.mark.parametrize("stride,padding,dilation,groups", CASES)
@pytest.mark.parametrize("encoding,readout,reset", [("constant", "membrane", "subtract"), ("poisson", "count", "zero")])
def test_engines_agree_on_convs(stride, padding, dilation, groups, encoding, readout, reset):
    rng = np.random.default_rng(groups)
    g = conv_net(rng, stride, padding, dilation, groups)
    x = rng.random((13, 4, 9, 9))
    q = compile_model(g, CompileConfig(bits=6, calibration=x, reset=reset))
    kw = dict(timesteps=11, encoding=encoding, readout=readout, record=True, batch_size=5)
    a = simulate(q, x, engine="numpy", **kw)
    for method in METHODS:
        b = numba_in_chunks(q, x, fast.STEP_FRAMES, method, **kw)
        assert np.array_equal(a.scores, b.scores) and np.array_equal(a.predictions, b.predictions), method
        assert a.counts.keys() == b.counts.keys()
        for k in a.counts:
            assert np.array_equal(a.counts[k], b.counts[k]), (method, k)
    assert sum(c.sum() for c in a.counts.values()) > 0  # the comparison saw spikes


def test_engines_agree_on_residual_and_signed_input():
    rng = np.random.default_rng(7)
    g = residual_net(rng)
    x = rng.normal(size=(20, 12))
    q = compile_model(g, CompileConfig(bits=8, calibration=x))
    assert q.nodes["in"]["op"].signed
    for enc in ("constant", "poisson"):
        a = simulate(q, x, engine="numpy", timesteps=9, encoding=enc, record=True)
        for method in METHODS:
            b = numba_in_chunks(q, x, fast.STEP_FRAMES, method, timesteps=9, encoding=enc, record=True)
            assert np.array_equal(a.scores, b.scores), method
            assert all(np.array_equal(a.counts[k], b.counts[k]) for k in a.counts), method


# ---- random quantized networks with extreme register values ------------------------------------

THETA_MAX = (1 << 17) - 1  # Loihi's 17-bit threshold


def _quantized(reset, membrane_bits):
    g = new_graph()
    g.graph["snnc"] = {"normalized": True, "quantized": True, "reset": reset, "membrane_bits": membrane_bits,
                       "v_init": "half"}
    return g


def _add(g, name, op, srcs=()):
    """add_op that also fills in the node's shape (verify does it for the whole graph at the end)."""
    add_op(g, name, op, list(srcs))
    g.nodes[name]["shape"] = O.infer_shape(op, [g.nodes[s]["shape"] for s in srcs])
    return name


class _Net:
    """Builds a quantized graph from hypothesis draws (structure, registers) and a numpy rng (arrays)."""

    def __init__(self, draw, rng, reset, membrane_bits):
        self.draw, self.rng, self.g = draw, rng, _quantized(reset, membrane_bits)
        self.reset, self.membrane_bits = reset, membrane_bits
        self.vmax = (1 << (membrane_bits - 1)) - 1
        self.i = 0

    def name(self, kind):
        self.i += 1
        return f"{kind}{self.i}"

    def weights(self, shape):
        bits = self.draw(st.integers(2, 16))
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        w = self.rng.integers(lo, hi + 1, shape)
        w[self.rng.random(shape) < self.draw(st.sampled_from([0.0, 0.5, 0.9]))] = 0  # sparse or dense
        if self.draw(st.booleans()):
            w.flat[self.rng.integers(0, w.size)] = self.draw(st.sampled_from([lo, hi]))  # an extreme weight
        return w, self.draw(st.integers(0, 7))

    def dense(self, src, n_out):
        n_in = int(np.prod(self.g.nodes[src]["shape"]))
        w, e = self.weights((n_out, n_in))
        return _add(self.g, self.name("fc"), O.Dense(w.astype(float), weight_int=w, weight_exp=e), [src])

    def conv(self, src, c_out, k, stride, padding, dilation, groups):
        c_in = self.g.nodes[src]["shape"][0]
        w, e = self.weights((c_out, c_in // groups, k, k))
        return _add(self.g, self.name("conv"), O.Conv2d(w.astype(float), stride=(stride, stride),
                      padding=(padding, padding), dilation=(dilation, dilation), groups=groups, weight_int=w,
                      weight_exp=e), [src])

    def neurons(self, src, output=False):
        shape = self.g.nodes[src]["shape"]
        d, vmax = self.draw, self.vmax
        theta = d(st.one_of(st.sampled_from([1, 2, THETA_MAX]), st.integers(1, THETA_MAX)))
        v_init = d(st.one_of(st.sampled_from([0, vmax, -vmax, theta // 2, theta - 1]), st.integers(-vmax, vmax)))
        kind = d(st.sampled_from(["zero", "small", "large", "extreme", "per_channel"]))
        if kind == "zero":
            bias = np.zeros(1, np.int64)
        elif kind == "small":
            bias = self.rng.integers(-theta, theta + 1, shape)
        elif kind == "large":
            bias = self.rng.integers(-(1 << 19), 1 << 19, shape)  # Loihi: 13-bit mantissa << up to 7
        elif kind == "extreme":
            bias = self.rng.choice([-vmax, vmax, 0], shape)  # saturates the membrane in one step
        else:
            bias = self.rng.integers(-theta, theta + 1, (shape[0],) + (1,) * (len(shape) - 1))
        cls = O.Output if output else O.IF
        leak = d(st.sampled_from(["none", "none", "scalar", "per_channel"]))
        decay_v = None if leak == "none" else self.rng.integers(0, 4097, 1 if leak == "scalar" else shape[0])
        beta = None if decay_v is None else 1.0 - decay_v / 4096.0
        decay_u = d(st.one_of(st.just(4096), st.sampled_from([0, 1, 41, 4095]), st.integers(0, 4096)))  # current memory
        return _add(self.g, "out" if output else self.name("if"),
                    cls(scale=1.0, threshold=int(theta), bias=bias.astype(np.int64), v_init=int(v_init), step=1.0,
                        reset=self.reset, membrane_bits=self.membrane_bits, beta=beta, decay_v=decay_v,
                        decay_u=decay_u), [src])


@st.composite
def quantized_nets(draw):
    """(graph, x): a random quantized network in SNN form (MLP, conv with synaptic pools and Flatten
    chains, or residual joins), registers anywhere in their valid ranges, and its input data."""
    reset = draw(st.sampled_from(["subtract", "zero"]))
    membrane_bits = draw(st.sampled_from([24, 24, 16, 9]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    net = _Net(draw, rng, reset, membrane_bits)
    g = net.g
    signed = draw(st.booleans())
    bits = draw(st.integers(2 if signed else 1, 12))
    kind = draw(st.sampled_from(["mlp", "conv", "residual"]))
    if kind == "mlp":
        shape = (draw(st.integers(1, 12)),)
    else:
        shape = (draw(st.sampled_from([1, 2, 4])), draw(st.integers(4, 7)), draw(st.integers(4, 7)))
    p = _add(g, "in", O.Input(shape, scale=1.0, bits=bits, signed=signed))
    if kind == "mlp":
        for _ in range(draw(st.integers(0, 2))):
            p = net.neurons(net.dense(p, draw(st.integers(1, 10))))
    elif kind == "conv":
        if draw(st.booleans()) and shape[1] % 2 == 0 and shape[2] % 2 == 0:  # a synaptic pool on the input
            p = _add(g, net.name("pool"), O.AvgPool2d((2, 2), (2, 2)), [p])
        groups = draw(st.sampled_from([1, 2])) if g.nodes[p]["shape"][0] % 2 == 0 else 1
        k, stride, pad, dil = (draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(0, 1)),
                               draw(st.integers(1, 2)))
        if min(g.nodes[p]["shape"][1:]) + 2 * pad < (k - 1) * dil + 1:
            k = dil = 1
        p = net.neurons(net.conv(p, 2 * draw(st.integers(1, 3)), k, stride, pad, dil, groups))
        c, h, w = g.nodes[p]["shape"]
        k = draw(st.sampled_from([1, 2]))
        if k == 2 and h % 2 == 0 and w % 2 == 0 and draw(st.booleans()):
            p = _add(g, net.name("pool"), O.AvgPool2d((2, 2), (2, 2)), [p])
        if draw(st.booleans()):
            p = net.neurons(net.conv(p, 4, 1, 1, 0, 1, 1))
        p = _add(g, net.name("flat"), O.Flatten(), [p])
        if draw(st.booleans()):
            p = _add(g, net.name("flat"), O.Flatten(), [p])
    else:  # two branches of different depth summed by an Add
        if len(shape) == 3:
            p = _add(g, net.name("flat"), O.Flatten(), [p])
        n = draw(st.integers(2, 8))
        h = net.neurons(net.dense(p, n))
        long_ = net.dense(net.neurons(net.dense(h, n)), n)
        p = net.neurons(_add(g, net.name("add"), O.Add(), [long_, net.dense(draw(st.sampled_from([p, h])), n)]))
    net.neurons(net.dense(p, draw(st.integers(1, 6))), output=True)
    verify(g)
    n_samples = draw(st.integers(1, 9))
    x = rng.uniform(-1.2 if signed else 0.0, 1.2, (n_samples,) + shape)
    return g, x


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(net=quantized_nets(), timesteps=st.integers(1, 24), encoding=st.sampled_from(["constant", "poisson"]),
       readout=st.sampled_from(["membrane", "count"]), batch_size=st.integers(1, 9), seed=st.integers(0, 3),
       step_frames=st.sampled_from([fast.STEP_FRAMES, 1, 7]), method=st.sampled_from(METHODS))
def test_engines_agree_on_random_networks_with_extreme_registers(net, timesteps, encoding, readout, batch_size, seed,
                                                                 step_frames, method):
    """``step_frames`` small: the numba engine runs time in many chunks (state carried across);
    ``method``: its weighted ops as a scatter per spike, as int8 products, or the cheaper."""
    g, x = net
    kw = dict(timesteps=timesteps, encoding=encoding, readout=readout, record=True, batch_size=batch_size, seed=seed)
    a = simulate(g, x, engine="numpy", **kw)
    b = numba_in_chunks(g, x, step_frames, method, **kw)
    assert np.array_equal(a.scores, b.scores), (a.scores, b.scores)
    assert np.array_equal(a.predictions, b.predictions)
    assert a.rates == b.rates
    assert a.counts.keys() == b.counts.keys()
    for k in a.counts:
        assert np.array_equal(a.counts[k], b.counts[k]), k


def sequence_of(x, timesteps, rng, events):
    """(N, T, *shape) frames for the samples ``x``: graded currents that vary step by step, or
    ``events`` (values in {-1, 0, 1}, {0, 1} when ``x`` is unsigned), as a sensor's frames."""
    shape = (len(x), timesteps) + x.shape[1:]
    if events:
        return rng.integers(-1 if x.min() < 0 else 0, 2, shape).astype(np.float64)
    return x[:, None] * rng.uniform(0, 1.3, shape)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(net=quantized_nets(), timesteps=st.integers(1, 16), encoding=st.sampled_from(SEQUENCE_ENCODINGS),
       readout=st.sampled_from(["membrane", "count", "first-spike", "k-spikes"]), record=st.booleans(),
       batch_size=st.integers(1, 9), seed=st.integers(0, 3), step_frames=st.sampled_from([fast.STEP_FRAMES, 1, 7]),
       events=st.booleans(), method=st.sampled_from(METHODS))
def test_engines_agree_on_random_sequences(net, timesteps, encoding, readout, record, batch_size, seed, step_frames,
                                           events, method):
    """Time-varying input (N, T, *shape), T from the data: the numba engine cuts the frames into
    its chunks of steps (``step_frames`` small: many chunks; a latency read-out without ``record``
    drops decided samples' frames) and equals the numpy engine."""
    g, x = net
    seq = sequence_of(x, timesteps, np.random.default_rng(seed), events)
    kw = dict(encoding=encoding, readout=readout, k=2 if readout == "k-spikes" else None, record=record,
              batch_size=batch_size, seed=seed)
    a = simulate(g, seq, engine="numpy", **kw)
    b = numba_in_chunks(g, seq, step_frames, method, **kw)
    assert np.array_equal(a.scores, b.scores), (a.scores, b.scores)
    assert np.array_equal(a.predictions, b.predictions)
    assert a.rates == b.rates
    for f in ("decision_time", "tied"):
        assert (getattr(a, f) is None) == (getattr(b, f) is None) and np.array_equal(getattr(a, f), getattr(b, f))
    for k in (a.counts or {}):
        assert np.array_equal(a.counts[k], b.counts[k]), k


def test_engines_agree_on_a_flatten_of_a_flatten():
    """A Dense reading a map through two Flattens (SNN form): the numba engine once permuted the
    Dense's columns only when its direct source was the Flatten of a map."""
    rng = np.random.default_rng(3)
    g = conv_net(rng, (1, 1), (0, 0), (1, 1), 1)
    fc = g.nodes["fc"]["op"]
    g.remove_edge("f", "fc")
    add_op(g, "f2", O.Flatten(), ["f"])
    g.add_edge("f2", "fc", port=0)
    g.nodes["fc"]["op"] = fc
    verify(g)
    x = rng.random((6, 4, 9, 9))
    q = compile_model(g, CompileConfig(bits=6, calibration=x))
    a, b = (simulate(q, x, engine=e, timesteps=9, readout="membrane", record=True) for e in ("numpy", "numba"))
    assert np.array_equal(a.scores, b.scores)


def test_engines_agree_on_wide_graded_input():
    """32-bit input levels (2**32 - 1) do not fit int32: the numba engine once wrapped them."""
    w = np.array([[1], [-1]])
    g = int_chain([w, np.eye(2, dtype=np.int64)], [1 << 20, 1], input_levels=(1 << 32) - 1)
    assert g.nodes["in"]["op"].levels == (1 << 32) - 1
    x = np.array([[1.0], [0.6]])
    a, b = (simulate(g, x, engine=e, timesteps=3, readout="membrane") for e in ("numpy", "numba"))
    assert np.array_equal(a.scores, b.scores), (a.scores, b.scores)


def _beyond_snn_form(case, rng):
    """Graphs verify() accepts that the compiler does not produce: general pools, spikes summed by
    an Add, a neuron layer reading the Input or a Flatten."""
    g = _quantized("subtract", 24)

    def neurons(name, src, theta, bias=np.zeros(1, np.int64)):
        return _add(g, name, O.IF(scale=1.0, threshold=theta, bias=bias, v_init=theta // 2, step=1.0), [src])

    def conv(name, src):
        w = rng.integers(-3, 4, (4, 2, 3, 3))
        return _add(g, name, O.Conv2d(w.astype(float), padding=(1, 1), weight_int=w), [src])

    _add(g, "in", O.Input((2, 6, 6), scale=1.0, bits=8))
    last = neurons("r", conv("c", "in"), 200) if case != "neurons_on_input" else None
    if case == "padded_pool":
        last = _add(g, "p", O.AvgPool2d((2, 2), (2, 2), (1, 1)), [last])
    elif case == "overlapping_pool":
        last = _add(g, "p", O.AvgPool2d((3, 3), (1, 1)), [last])
    elif case == "spikes_added":
        last = _add(g, "p", O.Add(), [last, neurons("r2", conv("c2", "in"), 150)])
    elif case == "neurons_on_input":
        last = neurons("r2", "in", 300)
    else:  # neurons on a Flatten of a map, with per-neuron biases (torch order)
        last = neurons("r2", _add(g, "f0", O.Flatten(), [last]), 1, np.arange(144, dtype=np.int64) % 3 - 1)
    last = _add(g, "f", O.Flatten(), [last])
    w = rng.integers(-5, 6, (3, g.nodes[last]["shape"][0]))
    _add(g, "fc", O.Dense(w.astype(float), weight_int=w), [last])
    _add(g, "out", O.Output(scale=1.0, threshold=10, bias=np.zeros(1, np.int64), v_init=0, step=1.0), ["fc"])
    verify(g)
    return g


@pytest.mark.parametrize("case", ["padded_pool", "overlapping_pool", "spikes_added", "neurons_on_input",
                                  "neurons_on_flatten"])
@pytest.mark.parametrize("encoding", ["constant", "poisson"])
def test_engines_agree_beyond_snn_form(case, encoding):
    """The numba engine once assumed kernel == stride pools and kept maps (H, W, C) through a
    Flatten; the numpy engine summed spikes with bool arithmetic (1 + 1 = 1)."""
    rng = np.random.default_rng(0)
    g = _beyond_snn_form(case, rng)
    x = rng.random((5, 2, 6, 6))
    kw = dict(timesteps=7, encoding=encoding, readout="membrane", record=True)
    a, b = simulate(g, x, engine="numpy", **kw), simulate(g, x, engine="numba", **kw)
    assert np.array_equal(a.scores, b.scores)
    assert all(np.array_equal(a.counts[k], b.counts[k]) for k in a.counts)
    assert sum(int(c.sum()) for c in a.counts.values()) > 0


def test_numpy_engine_adds_spikes_as_integers():
    """Two layers that both spike every step, summed by an Add: 2 per step, not bool's 1."""
    g = _quantized("subtract", 24)
    _add(g, "in", O.Input((1,), scale=1.0, bits=8))
    one = np.ones((1, 1), np.int64)
    for r in ("a", "b"):
        _add(g, f"fc_{r}", O.Dense(one.astype(float), weight_int=one), ["in"])
        _add(g, r, O.IF(scale=1.0, threshold=1, bias=np.zeros(1, np.int64), v_init=0, step=1.0), [f"fc_{r}"])
    _add(g, "sum", O.Add(), ["a", "b"])
    _add(g, "fc", O.Dense(one.astype(float), weight_int=one), ["sum"])
    _add(g, "out", O.Output(scale=1.0, threshold=1, bias=np.zeros(1, np.int64), v_init=0, step=1.0), ["fc"])
    verify(g)
    for engine in ("numpy", "numba"):
        r = simulate(g, np.ones((1, 1)), timesteps=4, readout="membrane", engine=engine)
        assert r.scores.tolist() == [[8.0]], engine

