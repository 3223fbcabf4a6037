"""The geometry cache: one entry per (kind, params, geometry), read-only arrays, per-kind limits."""

import numpy as np
import pytest

from diffnorm import cache


def test_cached_once_per_geometry_read_only_and_bounded():
    cache.clear()
    calls = []
    mask = np.ones((3, 4), bool)

    def compute():
        calls.append(1)
        return np.arange(3), np.zeros(2)

    first = cache.cached("t", mask, True, False, compute, 1)
    assert cache.cached("t", mask.copy(), True, False, compute, 1) is first and len(calls) == 1
    cache.cached("t", mask, False, False, compute, 1)  # other periodicity: another geometry
    cache.cached("t", mask, True, False, compute, 2)  # other parameters
    assert len(calls) == 3
    with pytest.raises(ValueError):
        first[0][0] = 5
    for k in range(5):  # at most `keep` entries of a kind
        other = mask.copy()
        other[0, k % 4] = False
        cache.cached("u", other, True, False, lambda: np.zeros(1), k, keep=2)
    assert sum(key[0] == "u" for key in cache._CACHE) == 2
    cache.clear()
