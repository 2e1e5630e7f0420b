"""A small hardware profile and the map check the mapping tests share."""
from snn_compiler.mapping import check_core_map

RESOURCES = ("neurons", "input_axons", "output_axons", "synapse_bits")


def small_profile(neurons=64, input_axons=128, output_axons=256, synapse_bits=8192, cores=64, chips=1, **enc):
    return {"name": "tiny", "core": {"neurons": neurons, "input_axons": input_axons, "output_axons": output_axons,
                                     "synapse_memory_bits": synapse_bits,
                                     "synapse_encoding": dict({"word_bits": 64, "header_bits": 20, "group_max": 64}, **enc)},
            "cores_per_chip": cores, "chips": chips}


def assert_map_ok(graph, cm, profile):
    chk = check_core_map(graph, cm, profile)
    assert chk["ok"], chk["violations"][:5]
    mine = {c["id"]: c for c in cm["cores"]}
    for row in chk["cores"]:   # the partitioner's own counts agree with the checker's recount
        for r in RESOURCES:
            assert mine[row["id"]][r] == row[r], (row["id"], r)
    assert len(cm["cores"]) >= cm["lower_bound"]
    return chk
