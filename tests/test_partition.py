"""The partition pass: reads config.profile, stores a JSON-able core map in the graph."""
import json

import pytest
import yaml

from snn_compiler.config import CompileConfig
from snn_compiler.mapping import MappingError, check_core_map, format_report, load_profile_dict, report
from snn_compiler.mapping import synthetic as S
from snn_compiler.passes.partition import partition


def test_no_profile_no_change():
    g = S.wide_mlp(hidden=20, inputs=8)
    assert partition(g, CompileConfig()) is False
    assert "core_map" not in g.graph["snnc"]


@pytest.mark.parametrize("profile", ["loihi1", "loihi2", "truenorth"])
def test_pass_stores_a_json_core_map(profile):
    g = S.mnist_cnn(bits=4) if profile != "truenorth" else S.wide_mlp(hidden=200, inputs=200, bits=4)
    cfg = CompileConfig(bits=4, profile=load_profile_dict(profile))
    assert partition(g, cfg) is True
    cm = g.graph["snnc"]["core_map"]
    json.loads(json.dumps(cm))
    assert cm["profile"] == profile and cm["weight_bits"] == 4 and cm["profile_spec"]["name"] == profile
    assert check_core_map(g, cm)["ok"]
    info = report(g)
    assert info["cores_used"] == len(cm["cores"]) and info["valid"]
    assert format_report(info).startswith(f"core map for {profile}")


def test_profile_given_as_name_or_file(tmp_path):
    g = S.wide_mlp(hidden=3000)
    assert partition(g, CompileConfig(profile="loihi1"))
    hidden = g.graph["snnc"]["core_map"]["layers"]["if2"]
    assert len(hidden) >= 3
    spec = load_profile_dict("loihi1")
    spec["core"]["neurons"] = 100
    f = tmp_path / "small.yaml"
    f.write_text(yaml.safe_dump(spec))
    g2 = S.wide_mlp(hidden=3000)
    partition(g2, CompileConfig(profile=str(f)))
    assert len(g2.graph["snnc"]["core_map"]["layers"]["if2"]) >= 30
    assert check_core_map(g2, g2.graph["snnc"]["core_map"])["ok"]


def test_pass_error_names_layer_and_resource():
    g = S.wide_mlp(hidden=3000)
    spec = load_profile_dict("loihi1")
    spec = dict(spec, cores_per_chip=8)
    with pytest.raises(MappingError, match=r"layer 'if2' needs at least 20 cores \(its binding resource is "
                                           r"synapse_bits\).*resource: cores"):
        partition(g, CompileConfig(profile=spec))
    # a conv net's lower bound (29) fits 29 cores, its map (30) does not: found after placing
    conv = S.build((3, 32, 32), [("conv", 16, 3, 1, 1), ("conv", 32, 3, 2, 1), ("conv", 10, 1, 1, 0)], seed=0)
    with pytest.raises(MappingError, match=r"needs 30 cores > 29 \(resource: cores\)"):
        partition(conv, CompileConfig(profile=dict(spec, cores_per_chip=29)))
