"""Fixtures of the hostile-input tests (tools in tools.py)."""
import pytest

from .tools import snapshot


@pytest.fixture
def unchanged():
    """``with unchanged(folder): ...`` asserts that nothing under ``folder`` was added, removed or changed."""
    from contextlib import contextmanager

    @contextmanager
    def watch(folder):
        before = snapshot(folder)
        yield
        after = snapshot(folder)
        assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                                 if before.get(k) != after.get(k)}
    return watch
