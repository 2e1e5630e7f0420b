"""Hardware profiles: loading (``--profile NAME|FILE``) and validation.

A profile is a YAML mapping (see ``configs/loihi1.yaml``)::

    name: loihi1
    registers: {...}            # register widths (snn_compiler.ir.registers.Registers, bounded by its WIDTHS)
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

Validation refuses unknown keys at every level, widths and limits out of range, files over 1 MiB
and YAML aliases (``*ref``: a profile never needs them, and nested aliases expand exponentially);
what a compile keeps (and writes into an artifact) is the validated dict, holding only checked keys.

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

from ..ir.registers import NAMES as REGISTER_NAMES
from ..ir.registers import RegisterError, Registers

CONFIG_DIRS = (
    Path(__file__).resolve().parents[1] / "data" / "profiles",   # shipped inside the package
    Path(__file__).resolve().parents[2] / "configs",              # a source checkout
)
LIMITS = ("neurons", "input_axons", "output_axons", "synapse_bits")
_CORE_KEYS = {"neurons": "neurons", "input_axons": "input_axons", "output_axons": "output_axons",
              "synapse_memory_bits": "synapse_bits"}
_OPTIONAL_CORE = ("compartment_configs", "threshold_configs", "synapse_configs", "axon_types")
CROSSBARS = ("binary",)
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


INT_MAX = 1 << 40                   # no count or width of a profile comes near this
MAX_BYTES = 1 << 20                 # a profile file is a few hundred bytes; refuse anything over 1 MiB
TOP_KEYS = ("name", "registers", "core", "cores_per_chip", "chips")
WEIGHT_BITS = (1, 32)               # registers.weight_bits: signed weight width the hardware keeps


def _int(d, key, where, minimum=1, maximum=INT_MAX):
    if key not in d:
        raise ProfileError(f"{where}: missing '{key}'")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise ProfileError(f"{where}: '{key}' must be an integer, got {v!r}")
    if v < minimum:
        raise ProfileError(f"{where}: '{key}' must be >= {minimum}, got {v}")
    if v > maximum:
        raise ProfileError(f"{where}: '{key}' must be <= {maximum}, got {v}")
    return v


def _registers(data, source) -> dict:
    """The validated ``registers:`` section (only the keys given): widths checked by Registers."""
    regs = data.get("registers")
    if regs is None:
        return {}
    if not isinstance(regs, dict):
        raise ProfileError(f"{source}: 'registers' must be a mapping, got {type(regs).__name__}")
    unknown = set(map(str, regs)) - set(REGISTER_NAMES) - {"weight_bits"}
    if unknown:
        raise ProfileError(f"{source}: unknown key(s) in 'registers': {', '.join(sorted(unknown))} "
                           f"(known: {', '.join(REGISTER_NAMES + ('weight_bits',))})")
    try:
        Registers(**{k: v for k, v in regs.items() if k != "weight_bits"})
    except RegisterError as e:
        raise ProfileError(f"{source}: registers.{e}") from None
    if "weight_bits" in regs:
        _int(regs, "weight_bits", f"{source}: registers", *WEIGHT_BITS)
    return dict(regs)


def validate_profile(data, source: str = "<profile>") -> Profile:
    """Check a profile mapping and return a :class:`Profile`; raise ProfileError naming the key."""
    return _validate(data, source)[0]


def _validate(data, source):
    """(Profile, the validated profile as a plain dict holding only the checked keys)."""
    if isinstance(data, Profile):
        return data, None
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: a profile must be a mapping, got {type(data).__name__}")
    unknown = set(map(str, data)) - set(TOP_KEYS)
    if unknown:
        raise ProfileError(f"{source}: unknown key(s): {', '.join(sorted(unknown))} (known: {', '.join(TOP_KEYS)})")
    name = data.get("name", Path(source).stem if source else "profile")
    if not isinstance(name, str) or not name or len(name) > 200 or not name.isprintable():
        raise ProfileError(f"{source}: 'name' must be a non-empty printable string (at most 200 characters)")
    core = data.get("core")
    if not isinstance(core, dict):
        raise ProfileError(f"{source}: missing 'core:' section with the per-core limits")
    unknown = set(map(str, core)) - set(_CORE_KEYS) - set(_OPTIONAL_CORE) - {"synapse_encoding", "crossbar"}
    if unknown:
        raise ProfileError(f"{source}: unknown key(s) in 'core': {', '.join(sorted(unknown))}")
    limits = {out: _int(core, key, f"{source}: core") for key, out in _CORE_KEYS.items()}
    enc = dict(_ENCODING_DEFAULTS)
    raw = core.get("synapse_encoding", {}) or {}
    if not isinstance(raw, dict):
        raise ProfileError(f"{source}: core.synapse_encoding must be a mapping")
    bad = set(map(str, raw)) - set(_ENCODING_DEFAULTS)
    if bad:
        raise ProfileError(f"{source}: unknown key(s) in core.synapse_encoding: {', '.join(sorted(bad))}")
    enc.update(raw)
    where = f"{source}: core.synapse_encoding"
    encoding = Encoding(word_bits=_int(enc, "word_bits", where), header_bits=_int(enc, "header_bits", where, 0),
                        group_max=_int(enc, "group_max", where), delay_bits=_int(enc, "delay_bits", where, 0),
                        tag_bits=_int(enc, "tag_bits", where, 0),
                        weight_bits=None if enc["weight_bits"] is None else _int(enc, "weight_bits", where))
    configs = tuple((k, _int(core, k, f"{source}: core")) for k in _OPTIONAL_CORE if k in core)
    if "crossbar" in core and core["crossbar"] not in CROSSBARS:
        raise ProfileError(f"{source}: core.crossbar must be one of {', '.join(CROSSBARS)}, got {core['crossbar']!r}")
    regs = _registers(data, source)
    wb = regs.get("weight_bits")
    profile = Profile(name=name, encoding=encoding, cores_per_chip=_int(data, "cores_per_chip", source),
                      chips=_int(data, "chips", source), max_weight_bits=wb, configs=configs, source=source, **limits)
    clean_core = {key: core[key] for key in list(_CORE_KEYS) + list(_OPTIONAL_CORE) + ["crossbar"] if key in core}
    if "synapse_encoding" in core:
        clean_core["synapse_encoding"] = {k: raw[k] for k in _ENCODING_DEFAULTS if k in raw}
    clean = {"name": name}
    if regs:
        clean["registers"] = {k: regs[k] for k in (*REGISTER_NAMES, "weight_bits") if k in regs}
    clean.update(core=clean_core, cores_per_chip=profile.cores_per_chip, chips=profile.chips)
    return profile, clean


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


class _ProfileLoader(yaml.SafeLoader):
    """yaml's safe loader without aliases: a profile never needs ``*ref``, and expanding nested
    aliases is how a kilobyte of YAML becomes gigabytes (a "billion laughs" bomb)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"alias *{event.anchor} is not allowed in a profile "
                                              "(write the value out)", event.start_mark)
        return super().compose_node(parent, index)


def _yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(e, "problem", None) or str(e)
    return " ".join(f"{where}{problem}".split())


def parse_yaml(text: str, source: str):
    """The YAML document in ``text`` (safe types only, no aliases); ProfileError on one line."""
    try:
        return yaml.load(text, Loader=_ProfileLoader)
    except yaml.YAMLError as e:
        raise ProfileError(f"{source}: not valid YAML: {_yaml_problem(e)}") from None
    except RecursionError:
        raise ProfileError(f"{source}: not valid YAML: nested too deeply") from None


def _read(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise ProfileError(f"{path}: cannot read the profile ({e.strerror or e})") from None
    if len(data) > MAX_BYTES:
        raise ProfileError(f"{path}: a profile must be under {MAX_BYTES // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProfileError(f"{path}: not a YAML text file (not UTF-8)") from None


def load_profile_dict(name_or_path) -> dict:
    """The profile as a validated dict (what ``CompileConfig.profile`` holds, and what goes into an
    artifact): only the keys :func:`validate_profile` checked, in a fresh plain dict."""
    if isinstance(name_or_path, Profile):
        raise ProfileError("load_profile_dict needs a profile name, file or mapping, not a Profile")
    if isinstance(name_or_path, dict):
        return _validate(name_or_path, str(name_or_path.get("name", "<profile>")))[1]
    path = resolve_profile_path(name_or_path)
    data = parse_yaml(_read(path), str(path))
    return _validate(data, str(path))[1]


def load_profile(profile) -> Profile:
    """A :class:`Profile` from a name, a YAML path, a dict or a Profile."""
    if isinstance(profile, Profile):
        return profile
    if isinstance(profile, dict):
        return validate_profile(profile, str(profile.get("name", "<profile>")))
    path = resolve_profile_path(profile)
    return validate_profile(load_profile_dict(path), str(path))
