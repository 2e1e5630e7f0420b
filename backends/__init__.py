"""Backends (simulators) and targets, found through plain mappings (and the entry point group
``snnc.backends`` for third-party simulators). Installed as ``snn_compiler.backends``."""
