"""Plans kept between simulate calls (sim/prepared.py): reused on an unchanged graph, remade after any
change to it, in place or not, and never carried by a copy; results always those of a fresh plan."""
import copy
import pickle

import numpy as np
import pytest

from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.sim import fast, prepared
from snn_compiler.sim.emulator import simulate

from recurrent_nets import recurrent_cuba

ENGINES = ["numpy"] + (["numba"] if fast.available() else [])


@pytest.fixture(scope="module")
def net():
    g = recurrent_cuba(40, 24, 5, reset="zero", seed=3, rec_gain=0.4)
    x = (np.random.default_rng(1).random((9, 20, 40)) < 0.2).astype(np.float32)
    return compile_model(g, CompileConfig(bits=8, calibration=x[:, 0], timesteps=20)), x


def run(q, x, engine, **kw):
    if engine == "float":  # the float SNN (the numpy engine), which reads the metadata's v_init
        return simulate(q, x, mode="float", readout="count", record=True, **kw)
    return simulate(q, x, engine=engine, readout="count", record=True, **kw)


def fresh(q, x, engine):
    """The result from plans made now (a deep copy carries none)."""
    return run(copy.deepcopy(q), x, engine)


def same(a, b):
    return np.array_equal(a.scores, b.scores) and a.rates == b.rates and \
        all(np.array_equal(a.counts[n], b.counts[n]) for n in a.counts)


def kept(q):
    """{kind: (Plan, FastPlan or None)} kept on the graph."""
    return {k: tuple(v[1:]) for k, v in q.__dict__.get(prepared.ATTRIBUTE, {}).items()}


@pytest.mark.parametrize("engine", ENGINES)
def test_an_unchanged_graph_reuses_its_plans(net, engine):
    q, x = net
    q = copy.deepcopy(q)
    a = run(q, x, engine)
    first = kept(q)
    b = run(q, x, engine)
    assert same(a, b) and kept(q) == first  # the same objects
    (entry,) = first.values()
    assert (entry[1] is not None) == (engine == "numba")


# (v_init in the metadata is read by the float SNN only, the integer one's is in its ops; the integer
# threshold and bias are the integer SNN's)
CHANGES = [(e, c) for e in ENGINES for c in ("weights", "threshold", "bias", "rewired")] + \
    [("float", c) for c in ("weights", "metadata", "rewired")]


@pytest.mark.parametrize("engine,change", CHANGES)
def test_a_graph_changed_in_place_gets_new_plans(net, engine, change):
    q, x = net
    q = copy.deepcopy(q)
    before = run(q, x, engine)
    old = kept(q)
    if change == "weights":  # in place: the same array object, other values
        for w in (q.nodes["fc_in"]["op"].weight_int, q.nodes["fc_in"]["op"].weight):  # (int and float SNN's)
            w[:] = -w
    elif change == "threshold":
        q.nodes["hid"]["op"].threshold = q.nodes["hid"]["op"].threshold // 3
    elif change == "bias":
        q.nodes["hid"]["op"].bias[:] += q.nodes["hid"]["op"].threshold // 4
    elif change == "metadata":
        q.graph["snnc"]["v_init"] = "zero"
    else:  # the read-out reads the recurrent layer's input projection instead of its spikes
        port = q.edges["hid", "fc_out"]
        q.remove_edge("hid", "fc_out")
        q.add_edge("hid.sum", "fc_out", **port)
        for field in ("weight_int", "weight"):
            setattr(q.nodes["fc_out"]["op"], field, getattr(q.nodes["fc_out"]["op"], field)[:, :24].copy())
    after = run(q, x, engine)
    assert all(plan is not old[k][0] for k, (plan, _) in kept(q).items()) and set(kept(q)) == set(old)
    assert same(after, fresh(q, x, engine))
    if change != "metadata":  # (a trained layer starts at 0 under either v_init: the plan is new, the result not)
        assert not same(after, before)  # the change matters: a kept plan would have given `before`


def test_copies_and_pickles_carry_no_plans(net):
    q, x = net
    q = copy.deepcopy(q)
    run(q, x, ENGINES[-1])
    assert kept(q)
    assert not kept(copy.deepcopy(q)) and not kept(pickle.loads(pickle.dumps(q)))
    assert prepared.digest(copy.deepcopy(q)) == prepared.digest(q)  # the same content, the same digest


def test_a_value_the_digest_cannot_read_keeps_nothing(net):
    q, x = net
    q = copy.deepcopy(q)
    q.graph["snnc"]["note"] = object()
    assert prepared.digest(q) is None
    a = run(q, x, ENGINES[-1])
    assert not kept(q) and same(a, fresh(q, x, ENGINES[-1]))


def test_method_counts_are_each_calls_own(net):
    if not fast.available():
        pytest.skip("numba is not installed")
    q, x = net
    q = copy.deepcopy(q)
    infos = [{}, {}]
    for info in infos:
        run(q, x, "numba", info=info)
    assert infos[0]["methods"] and infos[0]["methods"] == infos[1]["methods"]


def test_modes_and_encodings_have_plans_of_their_own(net):
    q, x = net
    q = copy.deepcopy(q)
    a = run(q, x, ENGINES[-1])
    f = simulate(q, x, mode="float", readout="count", record=True)
    assert set(kept(q)) == {("int", True, True), ("float", True, True)}
    assert same(run(q, x, ENGINES[-1]), a)
    assert same(simulate(q, x, mode="float", readout="count", record=True), f)


def test_the_integer_engines_never_read_the_float_weights(net):
    """What lets the integer SNN's digest leave the float weights out: with them NaN every integer engine
    gives the results it gave before (any read of them would spread NaN or fail)."""
    q, x = net
    q = copy.deepcopy(q)
    engines = ENGINES + (["torch"] if __import__("importlib").util.find_spec("torch") else [])
    before = {e: run(copy.deepcopy(q), x, e) for e in engines}
    for n in ("fc_in", "rec", "fc_out"):
        q.nodes[n]["op"].weight = np.full_like(q.nodes[n]["op"].weight, np.nan)
    assert prepared.digest(q, "int") == prepared.digest(copy.deepcopy(q), "int")
    for e in engines:
        assert same(run(copy.deepcopy(q), x, e), before[e])


def test_the_digest_is_the_same_on_any_number_of_threads():
    """Big arrays are hashed in fixed blocks on the engine's threads: the digest does not depend on how
    many there are, and still sees a change to any one block."""
    numba = pytest.importorskip("numba")
    rng = np.random.default_rng(0)
    arrays = [rng.integers(-128, 128, (3 << 20) // 4 + 5, dtype=np.int32), rng.random(1 << 17), np.zeros(0)]
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = prepared._array_digests(arrays)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        assert prepared._array_digests(arrays) == serial and len(serial) == 4 + 1 + 1  # (3 MB and 20 bytes: 4 blocks)
        arrays[0][-1] += 1  # (in the last, short block)
        assert prepared._array_digests(arrays) != serial
    finally:
        numba.set_num_threads(before)
