"""A model archive as torch will read it, and the one-line refusals of the file checks.

The file is read once into memory; the checks (``pt2_check``, ``torchscript_check``) and torch's
loader then see the same bytes (torch is handed a BytesIO), and each member is read with torch's
own zip reader, so neither a file swapped after the check nor a zip that two readers list
differently slips through.
"""
from __future__ import annotations

import io
import json
import zipfile
from typing import NoReturn

from ..errors import FrontendError

PICKLE_HELP = ("unpickling can run code from the file, so snnc refuses it: re-save the model with "
               "torch.export.save, or pass --allow-pickle (allow_pickle=True) only if you trust the file")
CODE_HELP = ("loading it would run code from the file, so snnc refuses it: re-save the model with "
             "torch.export.save, or pass --trust-code (trust_code=True) only if you trust the file")


def refuse(path, found: str, help_: str) -> NoReturn:
    raise FrontendError(f"{path}: {found}; {help_}")


def clip(text, n=60) -> str:
    """repr(text), cut to about n characters (a refusal stays one short line)."""
    text = repr(text)
    return text if len(text) <= n else text[:n] + "...'"


class Archive:
    """The members of a zip as torch's reader (PyTorchFileReader) sees them, names without the
    archive's top folder; refused when Python's zipfile lists other members."""

    def __init__(self, path, data: bytes):
        import torch
        self.path = path
        try:
            self._reader = torch._C.PyTorchFileReader(io.BytesIO(data))
            self.names = list(self._reader.get_all_records())
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                listed = z.namelist()
        except Exception as e:  # noqa: BLE001 - torch's reader raises RuntimeError
            raise FrontendError(f"{path}: not a readable model archive ({type(e).__name__}: "
                                f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})") from None
        root = listed[0].split("/", 1)[0] + "/" if listed else ""
        if (len(set(listed)) != len(listed) or not all(n.startswith(root) for n in listed)
                or {n[len(root):] for n in listed} != set(self.names)):
            refuse(path, "its zip lists different members to different readers (a tampered archive)", CODE_HELP)

    def read(self, name: str) -> bytes:
        return self._reader.get_record(name)

    def json(self, name: str):
        try:
            return json.loads(self.read(name))
        except ValueError as e:
            raise FrontendError(f"{self.path}: {name} is not valid JSON ({e})") from None
