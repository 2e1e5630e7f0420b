"""Hardware mapping: profiles, the core partitioner, an independent checker and the core-map report.

Imports without torch. ``partition_graph`` places every neuron layer of a quantized SNN-form
graph onto cores of a profile; ``check_core_map`` recounts any core map against a profile;
``report``/``format_report`` are what ``snnc inspect`` shows.
"""
from .bounds import equal_chunk, layer_bounds, lower_bound
from .checker import check_core_map
from .network import MappingError, build_net
from .partitioner import partition_graph
from .profile import (Profile, ProfileError, available_profiles, load_profile, load_profile_dict,
                      resolve_profile_path, validate_profile)
from .report import format_report, map_line, report

__all__ = ["MappingError", "Profile", "ProfileError", "available_profiles", "build_net", "check_core_map",
           "equal_chunk", "format_report", "map_line", "layer_bounds", "load_profile", "load_profile_dict", "lower_bound",
           "partition_graph", "report", "resolve_profile_path", "validate_profile"]
