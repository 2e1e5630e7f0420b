"""``--target truenorth``: a TrueNorth-style corelet (JSON) next to the artifact.

HELP is the text for README and ``--help``; the core model and what is transformed or refused
are in :mod:`.corelet`. ``corelet_bytes``/``corelet_path`` give the
file a compile commits together with the artifact;
:mod:`.sim` runs a corelet (tests compare it with the reference simulator).
"""
from __future__ import annotations


from snn_compiler.targets import Target, TargetError

from .corelet import TrueNorthError, corelet_bytes, corelet_path, export_corelet, supports  # noqa: F401
from .sim import check_corelet, run_corelet  # noqa: F401

DEFAULT_PROFILE = "truenorth"
HELP = ("truenorth: writes <output>.corelet.json, TrueNorth-style cores of 256 axons x 256 neurons with a binary "
        "crossbar and 4 axon types. Exact when each layer's weights take <= 4 distinct nonzero values (one type "
        "per value) or are 4-bit multiples of one step (--bits 4 or lower: types are the bit planes g, 2g, 4g, -8g); "
        "otherwise refused. Fan-in over 256 axons is refused (no partial-sum cores); fan-out goes through copy "
        "neurons; bias becomes leak; input must be unsigned spikes (Poisson, or --input-bits 1); read-out count. "
        "LIF, CUBA and recurrent or delayed connections (Delay) are refused.")


def prepare(config):
    """The config with the default profile configs/truenorth.yaml and register widths from its
    registers: section; ``config`` itself is not changed."""
    from dataclasses import replace

    from snn_compiler.ir.registers import registers_of
    from snn_compiler.mapping import load_profile_dict
    profile = load_profile_dict(DEFAULT_PROFILE if config.profile is None else config.profile)
    return replace(config, profile=profile, registers=registers_of(profile))


def check(graph, config) -> None:
    """Refuse (TargetError naming the layer) what the corelet cannot express exactly."""
    try:
        corelet = export_corelet(graph, config)
    except TrueNorthError as e:
        raise TargetError(str(e)) from None
    bad = check_corelet(corelet)
    if bad:
        raise TargetError("corelet breaks the core model: " + "; ".join(bad[:3]))
    prof = config.profile if isinstance(getattr(config, "profile", None), dict) else {}
    max_cores = int(prof.get("cores_per_chip", 4096)) * int(prof.get("chips", 1))
    if len(corelet["cores"]) > max_cores:
        raise TargetError(f"the corelet needs {len(corelet['cores'])} cores > {max_cores} (resource: cores)")
    graph.graph.setdefault("snnc", {})["corelet"] = {
        "cores": len(corelet["cores"]), "copy_cores": sum(c["role"] == "copy" for c in corelet["cores"]),
        "layers": {k: len(v) for k, v in corelet["layers"].items()}, "weight_modes": corelet["weight_modes"]}


def extra_outputs(graph, config, out_path) -> dict:
    return {corelet_path(out_path): corelet_bytes(graph, config)}


TARGET = Target("truenorth", "TrueNorth-style corelet JSON (256x256 binary-crossbar cores, 4 axon types)",
                prepare=prepare, check=check, supports=supports, extra_outputs=extra_outputs,
                default_bits=4,  # 4-bit weights are bit-plane axon types: every layer maps exactly
                extra={"profile": DEFAULT_PROFILE, "help": HELP})

__all__ = ["TARGET", "HELP", "TrueNorthError", "export_corelet", "corelet_bytes", "corelet_path", "run_corelet", "check_corelet"]
