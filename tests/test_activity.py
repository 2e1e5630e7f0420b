"""The one silent/saturated rule (snn_compiler/activity.py) that compile, simulate and report apply."""
import numpy as np
import pytest

from snn_compiler.activity import (SATURATED_RATE, SILENT_SPIKES, activity_warnings, checked_rates,
                                   inactive_layers)
from snn_compiler.ir import add_op, new_graph, verify
from snn_compiler.ir import ops as O


def test_silent_below_a_tenth_of_a_spike_per_run_saturated_near_every_step():
    rates = {"a": 0.0, "b": 0.09 / 64, "c": 0.11 / 64, "d": SATURATED_RATE, "e": 0.5, "f": None}
    assert inactive_layers(rates, 64) == {"a": "silent", "b": "silent", "d": "saturated"}
    # silence is counted over the run: 0.002 spikes per step is 0.032 spikes in 16 steps, 0.128 in 64
    assert inactive_layers({"b": 0.002}, 16) == {"b": "silent"} and inactive_layers({"b": 0.002}, 64) == {}
    assert 0.002 * 16 < SILENT_SPIKES < 0.002 * 64


def test_rates_must_come_with_a_positive_run_length():
    with pytest.raises(ValueError, match="timesteps must be >= 1"):
        inactive_layers({"a": 0.0}, 0)


def test_the_readout_counts_only_when_it_spikes_and_warnings_name_the_layer():
    g = new_graph()
    add_op(g, "in", O.Input((2,)))
    add_op(g, "fc1", O.Dense(np.eye(2)), ["in"])
    add_op(g, "r1", O.IF(), ["fc1"])
    add_op(g, "fc2", O.Dense(np.ones((1, 2))), ["r1"])
    add_op(g, "out", O.Output(), ["fc2"])
    verify(g)
    rates = {"r1": 0.0, "out": 0.0}
    assert checked_rates(g, rates) == {"r1": 0.0}
    assert checked_rates(g, rates, readout="count") == rates
    lines = activity_warnings({"r1": 0.0, "x": 0.99}, 16, "measured on the data")
    assert lines[0].startswith("layer 'r1' is silent at T=16: 0 spikes per neuron per run (measured on the data)")
    assert "--layer-factor r1=F (F < 1)" in lines[0]
    assert lines[1].startswith("layer 'x' is saturated at T=16: rate 0.990") and "--layer-factor x=F (F > 1)" in lines[1]
