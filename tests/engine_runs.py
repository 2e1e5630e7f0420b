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


def methods_equal_numpy(graph, x, nodes, step_frames=None, methods=("product", "scatter", "auto"), **kw):
    """Runs the numba engine under each of ``methods``, asserts every score and spike count equals the
    numpy engine's, and returns ``{method: {node: the methods node ran}}`` for ``nodes``."""
    import numpy as np
    a = simulate(graph, x, engine="numpy", **kw)
    ran = {}
    for method in methods:
        info = {}
        b = numba_in_chunks(graph, x, step_frames or fast.STEP_FRAMES, method, info=info, **kw)
        assert np.array_equal(a.scores, b.scores), method
        assert all(np.array_equal(a.counts[k], b.counts[k]) for k in a.counts), method
        ran[method] = {n: set(info["methods"][n]) for n in nodes}
    return ran


def scatter_conv(x, w, groups, stride, padding, dilation):
    """The scatter's sums (numba_kernels.conv_events) of a grouped conv: x (F, H, W, C) channels-last
    integers, w (O, cg, k, k) int8; out (F, Ho, Wo, O) int32, square maps and kernels."""
    import numpy as np
    from snn_compiler.sim import numba_kernels as K
    c_out, cg, k, _ = w.shape
    og, size = c_out // groups, x.shape[1]
    # the scatter's layout: (groups * cg, kh, kw, og), as fast.FastPlan makes it
    wr = np.ascontiguousarray(w.reshape(groups, og, cg, k, k).transpose(0, 2, 3, 4, 1).reshape(groups * cg, k, k, og))
    out_size = (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    tab = fast._reach(size, k, stride, padding, dilation, out_size)
    out = np.zeros((len(x), out_size, out_size, c_out), np.int32)
    K.conv_events(x, wr, out, tab, tab, cg)
    return out


def assert_switch_turns_off(monkeypatch, variable, available):
    """``available()`` (an lru_cached check) is False with ``variable=0`` in the environment, True after."""
    monkeypatch.setenv(variable, "0")
    available.cache_clear()
    try:
        assert not available()
    finally:
        monkeypatch.delenv(variable)
        available.cache_clear()
    assert available()
