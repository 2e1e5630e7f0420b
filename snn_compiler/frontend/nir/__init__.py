"""NIR (the Neuromorphic Intermediate Representation, ``nir`` package) into and out of snnc: import
(:mod:`.read` checks and parses the file, :mod:`.lower` maps the graph onto the IR with
:mod:`.layers` and :mod:`.neurons`) and export (:mod:`.export`), sharing :mod:`.common`."""
from .common import DEFAULT_DT, NIRError
from .export import export_nir, nir_bytes, write_nir
from .lower import from_nir, load_nir
from .read import parse_nir_bytes, read_nir

__all__ = ["DEFAULT_DT", "NIRError", "export_nir", "from_nir", "load_nir", "nir_bytes",
           "parse_nir_bytes", "read_nir", "write_nir"]
