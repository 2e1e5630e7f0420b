"""Recurrent and delayed connections (the IR's Delay) on Lava, on TrueNorth and in the core mapper.

Lava: every connection takes one hardware step, so a layer's own recurrence of one step is its
output through a Dense back into its input; longer Delays and feed-forward Delays get relays of
extra steps; a feedback whose loop has more connections than steps of Delay is refused at
compile time. The Lava runs (marked ``lava``) compare every layer's spike counts and the read-out
with the reference, exactly, through ``snnc check``'s comparison; they are few and small (each
Lava run costs seconds).
"""
import re

import numpy as np
import pytest

from recurrent_nets import recurrent_cuba
from snn_compiler import artifact, cli
from snn_compiler.backends import lava
from snn_compiler.backends.lava.plan import DelayError, lava_depths, lif_fit, make_plan
from snn_compiler.compile import compile_model
from snn_compiler.conformance import compare_backends
from snn_compiler.config import CompileConfig
from snn_compiler.ir import add_op, new_graph, verify
from snn_compiler.ir import neuron as N
from snn_compiler.ir import ops as O
from snn_compiler.ir.layers import layer_depths
from snn_compiler.passes import PassError
from snn_compiler.sim.emulator import simulate
from snn_compiler.targets import TargetError

T = 16


def needs_lava(test):
    return pytest.mark.lava(pytest.mark.skipif(
        not lava.available(), reason="Lava backend needs .venv-lava (Python 3.10, lava-nc 0.10.0); run "
                                     "scripts/bootstrap.sh")(test))


def _spikes(seed=1, n=5, steps=T, n_in=12, p=0.3):
    return (np.random.default_rng(seed).random((n, steps, n_in)) < p).astype(float)


def _feedback(fb_steps=2, **kw):
    """recurrent_cuba(second=True) with the feedback hid2 -> hid delayed ``fb_steps`` steps."""
    g = recurrent_cuba(second=True, **kw)
    g.nodes["hid2.delay"]["op"].steps = fb_steps
    verify(g)
    return g


def _delayed_ff(n_in=12, n=10, n_out=4, seed=0, reset="subtract"):
    """Feed-forward Delays only: in -> fc1 -> h1; h2 reads Delay(in, 1) and Delay(h1, 2) (the graded
    input delayed, and a layer's spikes skipping ahead late); h2 -> fc_out -> out."""
    rng = np.random.default_rng(seed)
    g = new_graph()

    def layer(read=False):
        return N.Neuron(scale=1.0, spike_value=1.0, beta=np.array([0.9]), decay_u=41, reset=reset, readout=read)

    add_op(g, "in", O.Input((n_in,)))
    add_op(g, "fc1", O.Dense(rng.normal(0, 0.5, (n, n_in))), ["in"])
    add_op(g, "h1", layer(), ["fc1"])
    add_op(g, "in.delay", O.Delay((n_in,), steps=1), ["in"])
    add_op(g, "h1.delay", O.Delay((n,), steps=2), ["h1"])
    add_op(g, "fc_in", O.Dense(rng.normal(0, 0.4, (n, n_in))), ["in.delay"])
    add_op(g, "fc_h1", O.Dense(rng.normal(0, 0.6, (n, n))), ["h1.delay"])
    add_op(g, "h2", layer(), [add_op(g, "h2.sum", O.Add(), ["fc_in", "fc_h1"])])
    add_op(g, "fc_out", O.Dense(rng.normal(0, 0.5, (n_out, n))), ["h2"])
    add_op(g, "out", layer(read=True), ["fc_out"])
    verify(g)
    return g


def _conv_recurrent(delay=1, seed=0, reset="subtract"):
    """A recurrent map: in (2, 6, 6) -> conv -> h (4, 6, 6) with a 3x3 conv from its own spikes
    ``delay`` steps late -> flatten -> fc -> out."""
    rng = np.random.default_rng(seed)
    g = new_graph()

    def layer(read=False):
        return N.Neuron(scale=1.0, spike_value=1.0, beta=np.array([0.9]), decay_u=41, reset=reset, readout=read)

    add_op(g, "in", O.Input((2, 6, 6)))
    add_op(g, "conv", O.Conv2d(rng.normal(0, 0.5, (4, 2, 3, 3)), padding=(1, 1)), ["in"])
    add_op(g, "h.delay", O.Delay((4, 6, 6), steps=delay))
    add_op(g, "rec", O.Conv2d(rng.normal(0, 0.3, (4, 4, 3, 3)), padding=(1, 1)), ["h.delay"])
    add_op(g, "h", layer(), [add_op(g, "h.sum", O.Add(), ["conv", "rec"])])
    add_op(g, "fc", O.Dense(rng.normal(0, 0.2, (3, 144))), [add_op(g, "flat", O.Flatten(), ["h"])])
    add_op(g, "out", layer(read=True), ["fc"])
    g.add_edge("h", "h.delay", port=0)
    verify(g)
    return g


def _compile(g, target="lava", steps=T, bits=8, **kw):
    n_in = g.nodes["in"]["shape"]
    calib = (np.random.default_rng(0).random((32,) + tuple(n_in)) < 0.3).astype(float)
    return compile_model(g, CompileConfig(bits=bits, calibration=calib, timesteps=steps, target=target, **kw))


def _relays(plan):
    return {c.name: (c.src, c.dst, c.delay, c.steps) for c in plan.conns if c.delay or c.steps}


# ---- the plan: depths and relays (no Lava needed) ---------------------------------------------------

def test_a_self_recurrence_of_one_step_is_a_plain_dense_back_into_the_layer():
    plan = make_plan(_compile(recurrent_cuba()))
    assert {n: lp.depth for n, lp in plan.layers.items()} == {"hid": 1, "out": 2}
    # no extra hardware step: the Dense's own step is the Delay's; the relay only guards windows
    assert _relays(plan) == {"rec": ("hid", "hid", 0, 1)}


def test_a_longer_delay_gets_a_relay_of_the_extra_steps():
    plan = make_plan(_compile(recurrent_cuba(delay=3)))
    assert _relays(plan) == {"rec": ("hid", "hid", 2, 3)}


def test_a_feedback_with_enough_delay_spans_the_layers_it_skips():
    plan = make_plan(_compile(_feedback(fb_steps=3)))
    assert {n: lp.depth for n, lp in plan.layers.items()} == {"hid": 1, "hid2": 2, "out": 3}
    # hid2 (depth 2) -> fb -> hid (depth 1): 3 logical steps = 1 (Dense) + 1 (depth) + 1 relay step
    assert _relays(plan) == {"rec": ("hid", "hid", 0, 1), "fb": ("hid2", "hid", 1, 3)}


def test_feed_forward_delays_are_relays_and_keep_the_feed_forward_depths():
    g = _compile(_delayed_ff())
    plan = make_plan(g)
    assert {n: lp.depth for n, lp in plan.layers.items()} == {"h1": 1, "h2": 1, "out": 2}
    assert {n: d for n, d in layer_depths(g).items() if n in plan.layers} == {"h1": 1, "h2": 1, "out": 2}
    assert _relays(plan) == {"fc_in": ("in", "h2", 1, 1), "fc_h1": ("h1", "h2", 1, 2)}


@pytest.mark.parametrize("rec_delay", [1, 2])
def test_a_feedback_faster_than_its_loop_is_refused_at_compile_time_naming_it(rec_delay):
    """hid -> fc_mid -> hid2 -> fb -> hid is two connections, two hardware steps; a Delay of one step
    cannot be met (no depth assignment exists), whatever hid's own recurrence."""
    with pytest.raises(TargetError, match=r"^lava target: the loop hid -> hid2 -> hid \(through 'fc_mid', 'fb'\) "
                                          r"takes 2 hardware steps on Lava \(every connection adds one\) but its "
                                          r"Delays give 1 step: .* \(2 here\)$"):
        _compile(recurrent_cuba(second=True, delay=rec_delay))
    with pytest.raises(DelayError, match="the loop hid -> hid2 -> hid"):
        lava_depths(_compile(recurrent_cuba(second=True), target="reference"))
    _compile(recurrent_cuba(second=True), target="reference")  # the reference runs it: only Lava refuses


def test_the_plan_refuses_a_graph_compiled_elsewhere_with_a_short_loop():
    q = _compile(recurrent_cuba(second=True), target="reference")
    with pytest.raises(TargetError, match="the loop hid -> hid2 -> hid"):
        lava.check_graph(q)


# ---- the core mapper counts recurrent synapses --------------------------------------------------

@pytest.mark.parametrize("second", [False, True])
def test_the_core_map_counts_recurrent_and_feedback_synapses(second, tmp_path, capsys):
    """hid's fan-in is its input, its own recurrence and (second) the feedback; its fan-out feeds
    itself too; a core with too few input axons for the recurrent fan-in is refused saying so."""
    n_in, n_hid = 12, 16
    g = _feedback(fb_steps=2) if second else recurrent_cuba(n_in=n_in, n_hid=n_hid)
    q = _compile(g, profile="loihi2")
    cm = q.graph["snnc"]["core_map"]
    hid = cm["layer_bounds"]["hid"]["demand"]
    assert hid["input_axons"] == n_in + n_hid + (n_hid if second else 0)
    assert hid["output_axons"] == 2 * n_hid  # one per neuron and consumer layer: itself and the next
    if second:
        assert cm["layer_bounds"]["hid2"]["demand"]["output_axons"] == 2 * n_hid  # the feedback and the read-out
    assert len(cm["cores"]) == len(cm["layers"]) == (3 if second else 2)
    # the per-core recount from the weights (snnc inspect --cores) agrees: hid's core has 28 (44) input axons
    artifact.save(q, tmp_path / "net.snnc")
    assert cli.main(["inspect", str(tmp_path / "net.snnc"), "--cores"]) == 0
    row = next(ln for ln in capsys.readouterr().out.splitlines() if re.match(r"^0\s+0\s+hid\s", ln))
    assert f"{hid['input_axons']}/8192" in row.split()
    small = dict(cm["profile_spec"], name="loihi2-small")
    small["core"] = dict(small["core"], input_axons=n_in + n_hid - 1)  # the feed-forward fan-in (12) would fit
    with pytest.raises(PassError, match=rf"layer 'hid' does not fit a core of profile 'loihi2-small': one neuron "
                                        rf"\(flat index 0\) needs {n_in + n_hid} input_axons \(limit {n_in + n_hid - 1}\)"):
        _compile(recurrent_cuba(n_in=n_in, n_hid=n_hid), profile=small)


# ---- TrueNorth -------------------------------------------------------------------------------------

def test_truenorth_refuses_a_delay_with_the_reason():
    why = (r"a Delay of 2 steps \(a recurrent or delayed connection\): TrueNorth's axons have delays of 1\.\.15 "
           r"ticks, but snnc's corelet exporter does not model them .* route a core's output back into itself")
    with pytest.raises(TargetError, match=rf"target truenorth cannot run layer 'hid.delay' \(Delay\): {why}"):
        _compile(recurrent_cuba(delay=2), target="truenorth")
    from snn_compiler.backends.truenorth import TrueNorthError, export_corelet
    with pytest.raises(TrueNorthError, match=rf"^layer 'hid.delay': {why}"):  # compiled for another target
        export_corelet(_compile(recurrent_cuba(delay=2), target="reference"))


# ---- Lava against the reference, spike for spike ----------------------------------------------------

def _check(q, x, readout="count"):
    """``snnc check --backends reference,lava``: every layer's counts (every sample and neuron) and
    the read-out identical; else the first divergence (sample, step, layer, neuron) is the message."""
    ref = simulate(q, x, readout="count", record=True)
    assert all(c.sum() > 0 for c in ref.counts.values()), "a silent layer: the test would prove little"
    out = compare_backends(q, x, ("reference", "lava"), readout=readout)
    assert out["passed"], out["first_divergence"]
    # every spiking layer compared (the read-out's membrane under a membrane read-out: as scores)
    assert set(out["layers"]) == set(ref.counts) - ({"out"} if readout == "membrane" else set())


def _if_net(**kw):
    """recurrent_cuba with integrate-and-fire layers (no leak, no current memory)."""
    g = recurrent_cuba(alpha=0.0, **kw)
    for n in ("hid", "out"):
        g.nodes[n]["op"].beta = None
    return g


@needs_lava
@pytest.mark.parametrize("build,kw,bits,readout", [
    (recurrent_cuba, dict(reset="zero"), 8, "count"),                  # decay_u 41, delay 1: the recurrent Dense alone
    (recurrent_cuba, dict(reset="subtract", delay=3), 8, "membrane"),  # a relay of 2 extra steps
    (_if_net, dict(reset="zero", delay=2), 4, "count"),  # stock LIF (4 bits: its v register holds the worst case)
])
def test_lava_runs_recurrent_nets_spike_for_spike(build, kw, bits, readout):
    q = _compile(build(**kw), bits=bits)
    plan = make_plan(q)
    assert plan.layers["hid"].decay_u == (4096 if build is _if_net else 41)
    # reset to zero without leak: Lava's own LIF runs it (the relay also drops its pipeline-fill spikes)
    assert (lif_fit(plan, "hid", T) is None) == (build is _if_net)
    _check(q, _spikes(), readout)


@needs_lava
def test_lava_runs_a_feedback_from_the_second_layer():
    _check(_compile(_feedback(fb_steps=2, reset="zero")), _spikes(seed=2))


@needs_lava
@pytest.mark.parametrize("build,readout", [
    (lambda: _feedback(fb_steps=2, reset="subtract"), "count"),
    (lambda: recurrent_cuba(reset="zero", delay=3), "membrane"),  # the read-out's membrane at every step
    (lambda: _conv_recurrent(delay=1), "count"),                   # a conv from a map's own spikes
], ids=["feedback", "delay3-membrane", "conv"])
def test_lava_gives_every_step_of_every_layer_as_the_reference(build, readout):
    """record_steps: each step's spikes of every layer (the membrane of a read-out that does not
    spike), not only their counts, equal on Lava and the reference."""
    q = _compile(build())
    layers = [n for n in ("hid", "hid2", "h", "out") if n in q]
    shape = q.nodes["in"]["shape"]
    x = (np.random.default_rng(6).random((4, T) + tuple(shape)) < 0.3).astype(float)
    ref = simulate(q, x, readout=readout, record_steps=layers)
    got = lava.run(q, x, readout=readout, record_steps=layers)
    assert set(got.steps) == set(layers)
    for n in layers:
        assert got.steps[n].dtype == ref.steps[n].dtype and got.steps[n].shape == ref.steps[n].shape, n
        bad = np.argwhere(got.steps[n] != ref.steps[n])
        assert not len(bad), f"layer {n}: first differing (sample, step, neuron) {tuple(bad[0])}"
        assert ref.steps[n].any(), n
    assert np.array_equal(got.scores, ref.scores)


@needs_lava
def test_lava_windows_shorter_than_the_delays_and_the_pipeline():
    """T = 2 < the Delays (3) and the depth (3): windows overlap in the pipeline and every delayed
    spike would land in a later sample's window; the relays drop them all, as the reference's
    fresh delay lines do. A latency read-out's decisions agree too."""
    q = _compile(_feedback(fb_steps=3, delay=3), steps=2)
    x = (np.random.default_rng(2).random((6, 2, 12)) < 0.5).astype(float)
    kw = dict(readout="first-spike", record_steps=["hid", "hid2", "out"])
    ref, got = simulate(q, x, **kw), lava.run(q, x, **kw)
    assert all(np.array_equal(ref.steps[n], got.steps[n]) for n in ref.steps)
    assert np.array_equal(ref.decision_time, got.decision_time) and np.array_equal(ref.predictions, got.predictions)
    assert ref.steps["hid"].any() and ref.steps["out"].any()


def _random_net(seed):
    """A random recurrent net (seeded): sizes, delays, a feedback (seed even) of 2-4 steps, reset,
    current and membrane decays, weight bits, threshold, T and read-out."""
    r = np.random.default_rng(seed)
    pick = lambda *v: v[int(r.integers(len(v)))]  # noqa: E731
    sizes = tuple(int(r.integers(2, m)) for m in (10, 13, 5))
    kw = dict(alpha=pick(0.0, 0.5, 1 - 41 / 4096), beta=pick(0.8, 1.0), reset=pick("zero", "subtract"),
              second=seed % 2 == 0, delay=int(r.integers(1, 4)), threshold=pick(0.3, 1.0), seed=seed)
    g = recurrent_cuba(*sizes, **kw)
    if kw["second"]:
        g.nodes["hid2.delay"]["op"].steps = int(r.integers(2, 5))  # 2 connections: >= 2 steps on Lava
        verify(g)
    steps = int(r.integers(2, 13))
    x = (r.random((4, steps, sizes[0])) < 0.4).astype(float)
    return g, x, steps, pick(3, 8, 9), pick("count", "membrane", "k-spikes")


@needs_lava
@pytest.mark.parametrize("seed", [0, 5, 6])  # 3- and 8-bit, with and without a feedback, count and k-spikes
def test_lava_equals_the_reference_at_every_step_on_random_recurrent_nets(seed):
    g, x, steps, bits, readout = _random_net(seed)
    q = _compile(g, steps=steps, bits=bits)
    layers = [n for n in ("hid", "hid2", "out") if n in q]
    kw = dict(readout=readout, k=2 if readout == "k-spikes" else None, record_steps=layers)
    ref, got = simulate(q, x, **kw), lava.run(q, x, **kw)
    for n in layers:
        assert np.array_equal(ref.steps[n], got.steps[n]), n
    assert np.array_equal(ref.scores, got.scores) and np.array_equal(ref.predictions, got.predictions)
    assert ref.steps["hid"].any(), "a silent recurrent layer: the test would prove little"


@needs_lava
def test_lava_runs_feed_forward_delays():
    _check(_compile(_delayed_ff()), _spikes(seed=3), "membrane")


@needs_lava
def test_cli_check_reference_lava_on_a_recurrent_artifact(tmp_path, capsys):
    artifact.save(_compile(recurrent_cuba(reset="subtract", delay=2)), tmp_path / "net.snnc")
    np.savez(tmp_path / "x.npz", x=_spikes(seed=4))  # a sequence (N, T, 12): T from the file
    rc = cli.main(["check", str(tmp_path / "net.snnc"), "--data", str(tmp_path / "x.npz"), "--backends",
               "reference,lava", "--readout", "count", "--no-progress"])
    out = capsys.readouterr()
    assert rc == 0, out
    assert "T=16" in out.out

