"""sim/heap.py: once the numba engine runs, malloc keeps freed memory for reuse (glibc only)."""
import platform

import numpy as np
import pytest

from snn_compiler.sim import heap


class FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return 1


RAISED = [(heap.M_MMAP_THRESHOLD, heap.KEPT_BLOCK), (heap.M_TRIM_THRESHOLD, heap.KEPT_TOP)]


@pytest.fixture
def libc(monkeypatch):
    fake = FakeLibc()
    monkeypatch.setattr(heap, "_glibc", lambda: fake)
    monkeypatch.setattr(heap, "_done", [])
    monkeypatch.delenv(heap.ENV, raising=False)
    return fake


def test_thresholds_are_raised_once_per_process(libc):
    assert heap.keep_freed_memory() and heap.keep_freed_memory()
    assert libc.calls == RAISED


def test_the_switch_turns_it_off(libc, monkeypatch):
    monkeypatch.setenv(heap.ENV, "0")
    assert not heap.keep_freed_memory()
    assert libc.calls == []


def test_a_refused_setting_is_reported(libc, monkeypatch):
    monkeypatch.setattr(libc, "mallopt", lambda param, value: 0)
    assert not heap.keep_freed_memory()


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_is_found_here():
    assert heap._glibc() is not None


def _compiled(seed):
    from snn_compiler.compile import compile_model
    from snn_compiler.config import CompileConfig
    from test_engines import conv_net
    rng = np.random.default_rng(seed)
    x = rng.random((12, 4, 9, 9))
    return compile_model(conv_net(rng, (1, 1), (1, 1), (1, 1), 2), CompileConfig(bits=8, calibration=x)), x


def test_only_the_numba_engine_sets_it(libc):
    from snn_compiler.sim.emulator import simulate
    q, x = _compiled(5)
    simulate(q, x, timesteps=4, engine="numpy", batch_size=4)
    assert libc.calls == []
    simulate(q, x, timesteps=4, engine="numba", batch_size=4)
    assert libc.calls == RAISED


def test_results_are_the_same_with_memory_kept():
    """(The real glibc here: after the first numba run of the session the thresholds are raised, and the
    numpy engine, which never sets them, is the reference.)"""
    from snn_compiler.sim.emulator import simulate
    q, x = _compiled(3)
    kw = dict(timesteps=16, readout="count", record=True, batch_size=4)
    kept = simulate(q, x, engine="numba", **kw)
    assert heap.keep_freed_memory() == (heap._glibc() is not None)
    want = simulate(q, x, engine="numpy", **kw)
    assert np.array_equal(kept.scores, want.scores)
    assert all(np.array_equal(kept.counts[n], want.counts[n]) for n in kept.counts)
