"""One small cache for what depends on a grid's ocean geometry only (mask, shape, periodicity), not on its
diffusivities: the elimination tree of the exact method, the wall distances of the images prior, the coast
distance channel and the small ocean components. Many fields on one grid are the usual case (data sets,
prediction), and these cost 0.3 s, a few ms, 10 ms and 2 ms per 1° global field.

Least recently used entries are dropped first (``keep`` per kind, :data:`MAX_ENTRIES` in all). Cached arrays are
read-only: a caller that writes to one gets an error, not a corrupted cache.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

#: entries kept in all (least recently used dropped first)
MAX_ENTRIES = 32
_CACHE: OrderedDict = OrderedDict()


def geometry_key(mask: np.ndarray, periodic_x: bool, periodic_y: bool) -> tuple:
    """Identifies an ocean geometry: shape, periodic flags and a hash of the mask."""
    mask = np.ascontiguousarray(mask, dtype=bool)
    return (mask.shape, bool(periodic_x), bool(periodic_y), hashlib.sha1(np.packbits(mask).tobytes()).hexdigest())


def _read_only(value: Any) -> Any:
    for array in value if isinstance(value, tuple) else (value,):
        if isinstance(array, np.ndarray):
            array.setflags(write=False)
    return value


def cached(kind: str, mask: np.ndarray, periodic_x: bool, periodic_y: bool, compute: Callable[[], Any], *params,
           keep: int = 16) -> Any:
    """``compute()`` — a function of the geometry and ``params`` only — computed once per geometry; at most
    ``keep`` entries of this ``kind`` are kept."""
    key = (kind, params, geometry_key(mask, periodic_x, periodic_y))
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    hit = _CACHE[key] = _read_only(compute())
    same_kind = [k for k in _CACHE if k[0] == kind]
    for old in same_kind[: max(0, len(same_kind) - keep)]:
        del _CACHE[old]
    while len(_CACHE) > MAX_ENTRIES:
        _CACHE.popitem(last=False)
    return hit


def clear() -> None:
    _CACHE.clear()
