"""Running the numba engine with its time cut into small chunks (state carried across chunks)."""
from snn_compiler.sim import fast
from snn_compiler.sim.emulator import simulate


def numba_in_chunks(graph, x, step_frames, **kw):
    """``simulate(engine="numba")`` with at most ``step_frames`` timesteps x samples per chunk."""
    saved, fast.STEP_FRAMES = fast.STEP_FRAMES, step_frames
    try:
        return simulate(graph, x, engine="numba", **kw)
    finally:
        fast.STEP_FRAMES = saved
