"""NIR (the Neuromorphic Intermediate Representation, ``nir`` package) into and out of snnc."""
from .lower import (DEFAULT_DT, NIRError, export_nir, from_nir, is_nir_file, load_nir, nir_bytes, read_nir,
                    write_nir)

__all__ = ["DEFAULT_DT", "NIRError", "export_nir", "from_nir", "is_nir_file", "load_nir", "nir_bytes", "read_nir",
           "write_nir"]
