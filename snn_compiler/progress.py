"""Progress bars for the steps that can take more than a few seconds (tqdm when installed and asked for)."""
from __future__ import annotations


class _Null:
    def update(self, n=1):
        pass

    def close(self):
        pass


def bar(total: int, desc: str, unit: str = "sample", enabled: bool = True):
    """A tqdm bar on stderr that disappears when done, or a do-nothing stand-in (no tqdm, or not enabled)."""
    if not enabled:
        return _Null()
    try:
        from tqdm import tqdm
    except ImportError:  # the core works without tqdm
        return _Null()
    return tqdm(total=total, unit=unit, desc=desc, leave=False)
