"""``--json``: every command prints exactly one JSON object on stdout, success or failure.

A command hands its result to :func:`emit` instead of printing it; :func:`finish` (called by the
CLI once the command returned or raised) prints that object with the command's name, its exit
code, the warnings it raised and, on failure, the error line. JSON has no NaN or infinity: such
values become null; numpy scalars become plain numbers.
"""
from __future__ import annotations

import json
import math

_result = {}


def reset() -> None:
    _result.clear()


def emit(obj: dict) -> None:
    """The command's result (merged into the one object printed at the end)."""
    _result.update(obj)


def finite(v):
    """``v`` with NaN and infinities as None and numpy scalars and arrays as Python values."""
    if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):   # numpy scalars and arrays
        v = v.tolist()
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [finite(x) for x in v]
    return v


def dumps(obj, indent=None) -> str:
    return json.dumps(finite(obj), indent=indent, allow_nan=False)


def finish(command: str, code: int, warnings: list, error: str = None) -> str:
    """The one JSON object for this run; the collected result is cleared."""
    obj = {"command": command, "ok": error is None and code == 0, "exit_code": code}
    obj.update(_result)
    obj["warnings"] = list(warnings)
    if error is not None:
        obj["error"] = error
    reset()
    return dumps(obj, indent=1)
