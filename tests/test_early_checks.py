"""Issue 12: refusals that need no calibration come before it; --chips; a fast `snnc inspect`.

No torch: small float IR graphs from lava_nets go through the real compile pipeline.
"""
import importlib
import json

import numpy as np
import pytest

from snn_compiler import artifact
from snn_compiler import compile as compile_mod
from snn_compiler.backends import get_target
from snn_compiler.cli import build_parser, main
from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.summary import summary
from snn_compiler.mapping import MappingError, load_profile_dict

from lava_nets import mlp, rescnn

report_mod = importlib.import_module("snn_compiler.mapping.report")


@pytest.fixture
def no_numeric_passes(monkeypatch):
    """normalize (calibration), quantize and the partitioner must not run: they raise if called."""
    def boom(graph, config):
        raise AssertionError("a numeric pass ran before the early checks refused the network")
    boom.__name__ = "normalize"
    monkeypatch.setattr(compile_mod, "NUMERIC", [boom])


def small_profile(cores_per_chip=4, chips=1):
    spec = load_profile_dict("loihi1")
    spec["core"] = dict(spec["core"], neurons=64)
    return dict(spec, cores_per_chip=cores_per_chip, chips=chips)


def wide_mlp():
    g, shape = mlp(np.random.default_rng(0), sizes=(20, 300, 10))   # 300 / 64 -> 5 cores, + 1 for the output
    return g, np.random.default_rng(1).uniform(0, 1, (16,) + shape)


def test_lava_conv_groups_beyond_int8_pass_the_early_checks(no_numeric_passes):
    g, shape = rescnn(np.random.default_rng(0), c=128, hw=2)   # the skip becomes a 128-group depthwise conv
    config = CompileConfig(target="lava", calibration=np.zeros((4,) + shape))
    with pytest.raises(AssertionError, match="numeric pass ran"):  # not refused: Lava runs it as a Sparse matrix
        compile_model(g, config)


def test_lava_structural_check_passes_and_compile_still_runs_the_late_check():
    g, shape = rescnn(np.random.default_rng(0), c=3, hw=6)
    calib = np.random.default_rng(1).uniform(0, 1, (16,) + shape)
    q = compile_model(g, CompileConfig(target="lava", calibration=calib))
    assert q.graph["snnc"]["target"] == "lava" and "core_map" in q.graph["snnc"]


def test_core_bound_refused_before_calibration_and_chips_lets_it_through(no_numeric_passes, monkeypatch):
    g, calib = wide_mlp()
    with pytest.raises(MappingError, match=r"needs at least 6 cores \(lower bound, before calibration.*> 4 = 1 chip\(s\) "
                                           r"x 4 cores.*use --chips 2 or more"):
        compile_model(g, CompileConfig(calibration=calib, profile=small_profile()))
    monkeypatch.undo()   # the numeric passes and the partitioner run again
    q = compile_model(g, CompileConfig(calibration=calib, profile=small_profile(), chips=2))
    cm = q.graph["snnc"]["core_map"]
    assert cm["chips"] == 2 and cm["lower_bound"] == 6 and 6 <= len(cm["cores"]) <= 8
    assert q.graph["snnc"]["core_map"]["profile_spec"]["chips"] == 2


def test_chips_overrides_the_profile_a_target_chooses(no_numeric_passes):
    g, calib = wide_mlp()   # lava's default profile is loihi2 (1 chip x 128 cores): fits, so only --chips shows
    config = CompileConfig(target="lava", calibration=calib, chips=3)
    import snn_compiler.passes.partition as early
    seen = {}
    real_bound = early.check_core_bound

    def spy(graph, cfg):
        seen["profile"] = cfg.profile
        return real_bound(graph, cfg)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(early, "check_core_bound", spy)
        with pytest.raises(AssertionError, match="numeric pass ran"):
            compile_model(g, config)
    assert seen["profile"]["name"] == "loihi2" and seen["profile"]["chips"] == 3
    assert config.profile is None  # the caller's config is not changed


@pytest.mark.parametrize("chips", [0, -1, 100_000, 1.5, True])
def test_chips_is_validated(chips):
    with pytest.raises(ValueError, match="--chips must be an integer"):
        CompileConfig(chips=chips)


def test_chips_needs_a_profile():
    g, calib = wide_mlp()
    with pytest.raises(ValueError, match="--chips applies to a hardware profile"):
        compile_model(g, CompileConfig(calibration=calib, chips=2))


def test_cli_flags():
    p = build_parser()
    assert p.parse_args(["compile", "m.pt", "-o", "o.snnc", "--chips", "3"]).chips == 3
    assert p.parse_args(["compile", "m.pt", "-o", "o.snnc"]).chips is None
    assert p.parse_args(["inspect", "a.snnc", "--cores"]).cores and not p.parse_args(["inspect", "a.snnc"]).cores


@pytest.fixture
def mapped(tmp_path):
    g, calib = wide_mlp()
    q = compile_model(g, CompileConfig(calibration=calib, profile=small_profile(cores_per_chip=8)))
    path = tmp_path / "net.snnc"
    artifact.save(q, path)
    return q, path


@pytest.fixture
def checker_calls(monkeypatch):
    calls = []
    real = report_mod.check_core_map

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)
    monkeypatch.setattr(report_mod, "check_core_map", spy)
    return calls


def test_inspect_default_is_a_per_layer_summary_without_the_checker(mapped, checker_calls, capsys):
    q, path = mapped
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert not checker_calls
    assert "cores used, lower bound 6" in out and "stored counts" in out
    assert "layer relu1: 5 core(s) (lower bound 5, bound by neurons)" in out
    assert "synapse bits" not in out     # no per-core table
    assert main(["inspect", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert not checker_calls
    assert {"cores", "layers", "lower_bound"} <= set(info) and info["verified"] is False and info["valid"]
    assert sorted(i for ids in info["layers"].values() for i in ids) == [c["id"] for c in info["cores"]]
    stored = {c["id"]: c for c in q.graph["snnc"]["core_map"]["cores"]}
    assert all(c["neurons"] == stored[c["id"]]["neurons"] for c in info["cores"])


def test_inspect_cores_runs_the_checker(mapped, checker_calls, capsys):
    q, path = mapped
    assert main(["inspect", str(path), "--cores"]) == 0
    out = capsys.readouterr().out
    assert len(checker_calls) == 1 and "synapse bits" in out and "stored counts" not in out
    assert main(["inspect", str(path), "--cores", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert len(checker_calls) == 2 and info["verified"] is True and info["valid"]
    assert summary(q)["cores"] == info["cores"]      # the stored counts are the checker's recount


def test_stored_counts_over_a_limit_are_flagged(mapped):
    q, _ = mapped
    cm = q.graph["snnc"]["core_map"]
    cm["cores"][0]["neurons"] = 10_000
    info = summary(q)
    assert not info["valid"] and "neurons 10000 > limit 64" in info["violations"][0]
    assert get_target("reference")   # the registry is untouched


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 1, 1, 2), (1, 2, 2, 1), (3, 1, 1, 4),
                                                            (2, 0, 1, 4)])
def test_closed_form_fanouts_match_enumeration(stride, padding, dilation, groups):
    """The lower bound (and so the early refusal) counts conv synapses in closed form; it must be
    what enumerating every synapse gives, also for a layer fed by two connections."""
    from snn_compiler.ir import add_op, new_graph, verify
    from snn_compiler.ir import ops as O
    from snn_compiler.mapping.bounds import _fanouts, _fanouts_enumerated, _offsets
    from snn_compiler.mapping.network import build_net
    rng = np.random.default_rng(groups)
    g = new_graph()
    x = add_op(g, "in", O.Input((4, 9, 9)))
    c = add_op(g, "c", O.Conv2d(rng.normal(size=(8, 4 // groups, 3, 3)), stride=(stride, stride),
                                padding=(padding, padding), dilation=(dilation, dilation), groups=groups), [x])
    r = add_op(g, "r", O.IF(), [c])
    c2 = add_op(g, "c2", O.Conv2d(rng.normal(size=(8, 8 // groups, 3, 3)), padding=(1, 1), groups=groups), [r])
    r2 = add_op(g, "r2", O.IF(), [c2])
    c3 = add_op(g, "c3", O.Conv2d(rng.normal(size=(8, 8, 1, 1))), [r2])
    skip = add_op(g, "skip", O.Conv2d(np.ones((8, 1, 1, 1)), groups=8), [r])
    r3 = add_op(g, "r3", O.IF(), [add_op(g, "add", O.Add(), [c3, skip])])
    f = add_op(g, "flat", O.Flatten(), [r3])
    h = (9 + 2 * padding - 2 * dilation - 1) // stride + 1
    add_op(g, "out", O.Output(), [add_op(g, "fc", O.Dense(rng.normal(size=(3, 8 * h * h))), [f])])
    verify(g)
    net = build_net(g)
    offsets = _offsets(net)
    for name in net.layers:
        assert np.array_equal(np.sort(_fanouts(net, name, offsets)), np.sort(_fanouts_enumerated(net, name, offsets)))
