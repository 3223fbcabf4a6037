"""A small cache for what depends on a grid's ocean geometry only (mask, shape, periodicity): the coast distance
channel and the small ocean components. Many fields on one grid are the usual case at prediction time, and
these cost 10 ms and 2 ms per 1° global field, as much as a tenth of the whole prediction.

Cached arrays are read-only (a caller that writes to one gets an error, not a corrupted cache).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

#: entries kept (least recently used dropped first); a 1° global field's distance is 0.5 MB
MAX_ENTRIES = 16
_CACHE: OrderedDict = OrderedDict()


def geometry_key(grid) -> tuple:
    """Identifies the ocean geometry: shape, periodic flags and a hash of the mask."""
    mask = np.ascontiguousarray(grid.mask, dtype=bool)
    return (mask.shape, bool(grid.periodic_x), bool(grid.periodic_y),
            hashlib.sha1(np.packbits(mask).tobytes()).hexdigest())


def geometry_cached(name: str, grid, compute: Callable[[], np.ndarray], *params) -> np.ndarray:
    """``compute()`` (a function of ``grid``'s geometry and ``params`` only), computed once per geometry."""
    key = (name, params, geometry_key(grid))
    hit = _CACHE.get(key)
    if hit is None:
        hit = np.asarray(compute())
        hit.setflags(write=False)
        _CACHE[key] = hit
        while len(_CACHE) > MAX_ENTRIES:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return hit


def clear() -> None:
    _CACHE.clear()
