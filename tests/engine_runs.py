"""Running the numba engine with its time cut into small chunks (state carried across chunks)."""
from snn_compiler.sim import fast
from snn_compiler.sim.emulator import simulate


def numba_in_chunks(graph, x, step_frames, method="auto", **kw):
    """``simulate(engine="numba")`` with at most ``step_frames`` timesteps x samples per chunk, its
    weighted ops run by ``method`` (fast.METHOD: "auto", "scatter" or "product" where one applies)."""
    saved = fast.STEP_FRAMES, fast.METHOD
    fast.STEP_FRAMES, fast.METHOD = step_frames, method
    try:
        return simulate(graph, x, engine="numba", **kw)
    finally:
        fast.STEP_FRAMES, fast.METHOD = saved
