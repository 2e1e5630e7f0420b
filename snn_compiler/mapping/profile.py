"""Hardware profiles: loading (``--profile NAME|FILE``) and validation.

A profile is a YAML mapping (see ``configs/loihi1.yaml``)::

    name: loihi1
    registers: {...}            # register widths (snn_compiler.hardware.Registers), not read here
    core:                       # per-core limits
      neurons: 1024             # compartments
      input_axons: 4096         # distinct presynaptic sources a core receives from
      output_axons: 4096        # (neuron, destination core) pairs a core sends to
      synapse_memory_bits: 1048576
      synapse_encoding:         # word-based accounting (nengo-loihi SynapseConfig.bits_per_axon)
        word_bits: 64           # memory is allocated in words
        header_bits: 20         # per synapse group: 4-bit format + 6-bit count + 10-bit start index
        group_max: 64           # synapses per group (6-bit count + 1)
        delay_bits: 0           # per synapse, on top of the weight bits
        tag_bits: 0
        weight_bits: null       # bits per synapse weight; null: the compile's --bits
      compartment_configs: 32   # optional "configs per core" limits (one layer per core uses 1)
    cores_per_chip: 128
    chips: 1

Synapse memory model: a core stores, for each of its input axons, the list of its synapses sorted
by target neuron (neurons ordered inside the core as the core map says). Consecutive targets form
*runs*; a run is cut into groups of at most ``group_max`` synapses and each group costs
``ceil((header_bits + n * (weight_bits + delay_bits + tag_bits)) / word_bits)`` words; the cut is
the cheapest one (groups sized to fill their words: 61 8-bit synapses + a 20-bit header fill 8
words exactly, where nengo-loihi's fixed 64 would take 9). The weight
bits are the compile's ``--bits``. Two connections from the same source neuron to the same target
share one synapse (their weights add).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

CONFIG_DIRS = (
    Path(__file__).resolve().parents[1] / "data" / "profiles",   # shipped inside the package
    Path(__file__).resolve().parents[2] / "configs",              # a source checkout
)
LIMITS = ("neurons", "input_axons", "output_axons", "synapse_bits")
_CORE_KEYS = {"neurons": "neurons", "input_axons": "input_axons", "output_axons": "output_axons",
              "synapse_memory_bits": "synapse_bits"}
_OPTIONAL_CORE = ("compartment_configs", "threshold_configs", "synapse_configs", "axon_types")
_ENCODING_DEFAULTS = {"word_bits": 64, "header_bits": 20, "group_max": 64, "delay_bits": 0, "tag_bits": 0,
                      "weight_bits": None}


class ProfileError(ValueError):
    """A profile cannot be found or does not make sense; the message names the file and the key."""


@dataclass(frozen=True)
class Encoding:
    word_bits: int = 64
    header_bits: int = 20
    group_max: int = 64
    delay_bits: int = 0
    tag_bits: int = 0
    weight_bits: Optional[int] = None   # fixed weight cost per synapse (1 for a binary crossbar)

    def synapse_bits(self, weight_bits: int) -> int:
        w = self.weight_bits if self.weight_bits is not None else int(weight_bits)
        return w + self.delay_bits + self.tag_bits


@dataclass(frozen=True)
class Profile:
    name: str
    neurons: int
    input_axons: int
    output_axons: int
    synapse_bits: int
    encoding: Encoding
    cores_per_chip: int
    chips: int
    max_weight_bits: Optional[int] = None
    configs: tuple = ()          # ((name, limit), ...) optional per-core config limits
    source: str = ""

    @property
    def max_cores(self) -> int:
        return self.cores_per_chip * self.chips

    def limit(self, resource: str) -> int:
        return getattr(self, resource)

    def limits(self) -> dict:
        return {r: self.limit(r) for r in LIMITS}


def _int(d, key, where, minimum=1):
    if key not in d:
        raise ProfileError(f"{where}: missing '{key}'")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise ProfileError(f"{where}: '{key}' must be an integer, got {v!r}")
    if v < minimum:
        raise ProfileError(f"{where}: '{key}' must be >= {minimum}, got {v}")
    return v


def validate_profile(data, source: str = "<profile>") -> Profile:
    """Check a profile mapping and return a :class:`Profile`; raise ProfileError naming the key."""
    if isinstance(data, Profile):
        return data
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: a profile must be a mapping, got {type(data).__name__}")
    name = data.get("name", Path(source).stem if source else "profile")
    if not isinstance(name, str) or not name:
        raise ProfileError(f"{source}: 'name' must be a non-empty string")
    core = data.get("core")
    if not isinstance(core, dict):
        raise ProfileError(f"{source}: missing 'core:' section with the per-core limits")
    unknown = set(core) - set(_CORE_KEYS) - set(_OPTIONAL_CORE) - {"synapse_encoding", "crossbar"}
    if unknown:
        raise ProfileError(f"{source}: unknown key(s) in 'core': {', '.join(sorted(unknown))}")
    limits = {out: _int(core, key, f"{source}: core") for key, out in _CORE_KEYS.items()}
    enc = dict(_ENCODING_DEFAULTS)
    raw = core.get("synapse_encoding", {}) or {}
    if not isinstance(raw, dict):
        raise ProfileError(f"{source}: core.synapse_encoding must be a mapping")
    bad = set(raw) - set(_ENCODING_DEFAULTS)
    if bad:
        raise ProfileError(f"{source}: unknown key(s) in core.synapse_encoding: {', '.join(sorted(bad))}")
    enc.update(raw)
    where = f"{source}: core.synapse_encoding"
    encoding = Encoding(word_bits=_int(enc, "word_bits", where), header_bits=_int(enc, "header_bits", where, 0),
                        group_max=_int(enc, "group_max", where), delay_bits=_int(enc, "delay_bits", where, 0),
                        tag_bits=_int(enc, "tag_bits", where, 0),
                        weight_bits=None if enc["weight_bits"] is None else _int(enc, "weight_bits", where))
    configs = tuple((k, _int(core, k, f"{source}: core")) for k in _OPTIONAL_CORE if k in core)
    wb = (data.get("registers") or {}).get("weight_bits")
    if wb is not None and (isinstance(wb, bool) or not isinstance(wb, int) or wb < 1):
        raise ProfileError(f"{source}: registers.weight_bits must be a positive integer, got {wb!r}")
    return Profile(name=name, encoding=encoding, cores_per_chip=_int(data, "cores_per_chip", source),
                   chips=_int(data, "chips", source), max_weight_bits=wb, configs=configs, source=source, **limits)


def resolve_profile_path(name_or_path) -> Path:
    """``loihi1`` -> the shipped configs/loihi1.yaml; an existing file path is used as is."""
    p = Path(os.fspath(name_or_path)).expanduser()
    if p.suffix in (".yaml", ".yml") or os.sep in str(name_or_path) or p.is_file():
        if p.is_file():
            return p
        raise ProfileError(f"profile file {str(name_or_path)!r} does not exist")
    for d in CONFIG_DIRS:
        for ext in (".yaml", ".yml"):
            if (d / f"{name_or_path}{ext}").is_file():
                return d / f"{name_or_path}{ext}"
    raise ProfileError(f"unknown profile {str(name_or_path)!r}; available: {', '.join(available_profiles()) or 'none'}"
                       " (or pass a YAML file path)")


def available_profiles() -> list:
    names = set()
    for d in CONFIG_DIRS:
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def load_profile_dict(name_or_path) -> dict:
    """The profile's YAML as a dict (what ``CompileConfig.profile`` holds), validated."""
    if isinstance(name_or_path, dict):
        validate_profile(name_or_path)
        return name_or_path
    path = resolve_profile_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ProfileError(f"{path}: not valid YAML: {e}") from None
    validate_profile(data, str(path))
    return data


def load_profile(profile) -> Profile:
    """A :class:`Profile` from a name, a YAML path, a dict or a Profile."""
    if isinstance(profile, Profile):
        return profile
    if isinstance(profile, dict):
        return validate_profile(profile, str(profile.get("name", "<profile>")))
    path = resolve_profile_path(profile)
    return validate_profile(load_profile_dict(path), str(path))
