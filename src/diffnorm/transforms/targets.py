"""What the network predicts, and back to γ.

Targets (all standardized with the mean/std over the ocean cells of the training split):

- ``gamma``: γ (the seed study);
- ``gamma2``: γ²; ``inv_gamma``: 1/γ; ``log_gamma``: ln γ;
- ``log_ratio_analytic``: ln(γ / γ_a), γ_a the analytic normalization of SPEC §2
  (:func:`analytic_prior`) — a physics prior: the network only learns the correction for coasts and
  diffusivity gradients (dimensionless, O(0.1)), not the scale of γ;
- ``log_ratio_images``: ln(γ / γ_i), γ_i the lattice-with-coast-images normalization
  (:func:`diffnorm.normalization.image_normalization`, :func:`images_prior`) — a prior that already knows
  straight coasts and channels (mean |ε| ~4e-2 instead of 0.3), so the network learns a smaller correction.

``exact_small > 0`` (any target): on ocean components of at most that many cells (isolated cells, lakes,
where the analytic formula is off by up to a factor 10) γ is computed exactly by dense linear algebra
(:func:`exact_on_components`); those cells are left out of the loss and overwritten at prediction.

:meth:`TargetTransform.eps` gives SPEC §3's ε = (γ̂² − γ²)/γ² straight from predicted and true targets
(it depends only on the ratio γ̂/γ, so the prior cancels), in torch, differentiable.
"""

from __future__ import annotations

import numpy as np

TARGETS = ("gamma", "gamma2", "inv_gamma", "log_gamma", "log_ratio_analytic", "log_ratio_images")
#: targets that are the log of γ over a physics prior
PRIOR_TARGETS = ("log_ratio_analytic", "log_ratio_images")
# f(γ) and its inverse for the targets without a prior (the prior targets are ln(γ / prior))
_MAPS = {"gamma": (np.asarray, np.asarray), "gamma2": (np.square, np.sqrt),
         "inv_gamma": (np.reciprocal, np.reciprocal), "log_gamma": (np.log, np.exp)}


def small_components(grid, max_size: int) -> np.ndarray:
    """Boolean ``(ny, nx)``: ocean cells in connected components (through active faces, periodic axes
    wrapping) of at most ``max_size`` cells — isolated cells, lakes, enclosed seas. Cached per geometry
    (:mod:`diffnorm.transforms.geometry`; read-only)."""
    from .geometry import geometry_cached

    return geometry_cached("small_components", grid, lambda: _small_components(grid, max_size), int(max_size))


def _small_components(grid, max_size: int) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ny, nx = grid.mask.shape
    idx = np.arange(ny * nx).reshape(ny, nx)
    ax, ay = grid.active_x, grid.active_y
    src = np.concatenate([idx[ax], idx[ay]])
    dst = np.concatenate([np.roll(idx, -1, axis=1)[ax], np.roll(idx, -1, axis=0)[ay]])
    adj = coo_matrix((np.ones(src.size), (src, dst)), shape=(ny * nx, ny * nx))
    _, labels = connected_components(adj, directed=False)
    labels = labels.reshape(ny, nx)
    sizes = np.bincount(labels[grid.mask], minlength=labels.max() + 1)
    return grid.mask & (sizes[labels] <= max_size)


def exact_on_components(grid, steps: int, cells: np.ndarray) -> np.ndarray:
    """Exact γ (SPEC §2, dense linear algebra per component) on the ``cells`` (a union of whole
    components, e.g. :func:`small_components`); NaN elsewhere.

    BLAS runs single-threaded: this runs beside the images prior's threads (:func:`analytic_prior`), and
    multi-threaded OpenBLAS spin-waits for a core they hold (measured: a 260-cell component made a 1°
    prediction 25 ms slower with it, 1-3 ms slower without)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _exact_on_components(grid, steps, cells)


def _exact_on_components(grid, steps: int, cells: np.ndarray) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    out = np.full(grid.mask.shape, np.nan)
    if not cells.any():
        return out
    ny, nx = grid.mask.shape
    idx = np.arange(ny * nx).reshape(ny, nx)
    faces = []
    for active, diff, axis in ((grid.active_x & cells, grid.diff_x, 1), (grid.active_y & cells, grid.diff_y, 0)):
        faces.append((idx[active], np.roll(idx, -1, axis=axis)[active], diff[active]))
    src = np.concatenate([f[0] for f in faces])
    dst = np.concatenate([f[1] for f in faces])
    val = np.concatenate([f[2] for f in faces])
    flat = idx[cells]
    # components of the cells' own graph (a few hundred nodes, not the whole grid), as a label per grid cell
    pos = np.full(ny * nx, -1, dtype=np.int64)
    pos[flat] = np.arange(flat.size)
    adj = coo_matrix((np.ones(src.size), (pos[src], pos[dst])), shape=(flat.size, flat.size)).tocsr()
    labels = np.full(ny * nx, -1, dtype=np.int64)
    labels[flat] = connected_components(adj, directed=False)[1]
    area = grid.area.ravel().astype(np.float64)
    # cells grouped by component; ``local`` is each cell's index inside its own component
    order = np.argsort(labels[flat], kind="stable")
    members_all = flat[order]
    comps, starts, sizes = np.unique(labels[members_all], return_index=True, return_counts=True)
    local = np.empty(ny * nx, dtype=np.int64)
    local[members_all] = np.arange(members_all.size) - np.repeat(starts, sizes)
    # faces grouped the same way (both ends of a face lie in one component)
    face_order = np.argsort(labels[src], kind="stable")
    src, dst, val = src[face_order], dst[face_order], val[face_order]
    face_lo = np.searchsorted(labels[src], comps)
    face_hi = np.searchsorted(labels[src], comps, side="right")
    single = sizes == 1  # one cell: L = 1, so γ = sqrt(area)
    out.ravel()[members_all[starts[single]]] = np.sqrt(area[members_all[starts[single]]])
    for k in np.flatnonzero(~single):
        members = members_all[starts[k]:starts[k] + sizes[k]]
        faces_k = slice(face_lo[k], face_hi[k])
        i, j, d = local[src[faces_k]], local[dst[faces_k]], val[faces_k]
        a = np.diag(area[members])
        w = a.copy()
        np.add.at(a, (np.concatenate([i, j, i, j]), np.concatenate([i, j, j, i])),
                  np.concatenate([d, d, -d, -d]))
        h = np.linalg.matrix_power(np.linalg.solve(a, w), steps // 2)
        v = (h**2 / area[members][None, :]).sum(axis=1)
        out.ravel()[members] = v**-0.5
    return out


def analytic_prior(grid, steps: int, exact_small: int = 0, kind: str = "analytic") -> np.ndarray:
    """γ_a of :func:`diffnorm.normalization.analytic_normalization` (``kind="images"``: of
    :func:`~diffnorm.normalization.image_normalization`), with cells where it is not finite
    or not positive (no active face on an axis) set to the median over the ocean; 1 on land.

    With ``exact_small > 0`` the prior is the exact γ on components of at most that many cells
    (:func:`small_components`: isolated cells, lakes — where the analytic formula is worst, off by up to
    a factor 10), computed densely (milliseconds)."""
    from ..normalization import analytic_normalization, image_normalization

    if kind not in ("analytic", "images"):
        raise ValueError(f"unknown prior {kind!r}; choose analytic or images")
    exact = None
    if exact_small > 0:
        small = small_components(grid, exact_small)
        if small.any():  # in the background while the prior runs (the images prior's axes take two more threads)
            from ..selinv import thread_pool

            exact = thread_pool().submit(exact_on_components, grid, steps, small)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = analytic_normalization(grid, steps) if kind == "analytic" else image_normalization(grid, steps)
    ok = grid.mask & np.isfinite(g) & (g > 0)
    fill = float(np.median(g[ok])) if ok.any() else 1.0
    g = np.where(ok, g, fill)
    if exact is not None:
        g = np.where(small, exact.result(), g)
    return np.where(grid.mask, g, 1.0)


def check_exact_small(value) -> int:
    """A valid ``exact_small`` (a whole number of cells ≥ 0), or a ValueError that names the problem."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"exact_small must be a whole number of cells >= 0 (0: off), got {value!r}")
    return int(value)


def exact_small_override(value, meta: dict, trained_default: int) -> int:
    """A prediction-time ``exact_small`` (validated by :func:`check_exact_small`); warns when it is below the
    threshold the model was trained with (``meta["training"]["exact_small"]``, else ``trained_default``), because
    that hands the network components training left out of the loss."""
    exact_small = check_exact_small(value)
    trained = (meta.get("training") or {}).get("exact_small", trained_default)
    if isinstance(trained, (int, np.integer)) and exact_small < trained:
        import warnings

        warnings.warn(f"exact_small={exact_small} is below the {trained} the model was trained with: ocean components "
                      f"of {exact_small + 1}-{trained} cells were left out of its loss, so the network's γ there is "
                      "untrained (errors of tens of per cent)", UserWarning, stacklevel=3)
    return exact_small


class TargetTransform:
    """``y = (f(γ) − mean) / std`` on ocean cells (0 on land); ``inverse`` gives γ back."""

    def __init__(self, kind: str = "gamma", mean: float = 0.0, std: float = 1.0, exact_small: int = 0):
        if kind not in TARGETS:
            raise ValueError(f"unknown target {kind!r}; choose one of {', '.join(TARGETS)}")
        self.kind = kind
        self.mean = float(mean)
        self.std = float(std)
        #: γ on ocean components of at most this many cells is computed exactly (not learned); 0: off
        self.exact_small = int(exact_small)

    def prior(self, grid, steps: int) -> np.ndarray:
        """The physics prior of this target (images for ``log_ratio_images``, analytic otherwise)."""
        kind = "images" if self.kind == "log_ratio_images" else "analytic"
        return analytic_prior(grid, steps, self.exact_small, kind)

    def fixed(self, grid) -> np.ndarray:
        """Cells whose γ is computed exactly rather than predicted (small components)."""
        if self.exact_small <= 0:
            return np.zeros(grid.mask.shape, bool)
        return small_components(grid, self.exact_small)

    @property
    def needs_prior(self) -> bool:
        return self.kind in PRIOR_TARGETS

    def raw(self, gamma: np.ndarray, mask: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
        """f(γ) on ocean cells, 0 on land."""
        mask = np.asarray(mask, bool)
        g = np.where(mask, gamma, 1.0)
        if self.kind in _MAPS:
            f = _MAPS[self.kind][0](g)
        else:
            if prior is None:
                raise ValueError(f"target {self.kind} needs its prior")
            f = np.log(g / prior)
        return np.where(mask, f, 0.0)

    def fit(self, raws: list[np.ndarray], masks: list[np.ndarray]) -> TargetTransform:
        vals = np.concatenate([r[np.asarray(m, bool)] for r, m in zip(raws, masks, strict=True)])
        self.mean = float(vals.mean())
        std = float(vals.std())
        self.std = std if std > 0 else 1.0
        return self

    def forward(self, gamma: np.ndarray, mask: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
        mask = np.asarray(mask, bool)
        return np.where(mask, (self.raw(gamma, mask, prior) - self.mean) / self.std, 0.0)

    def inverse(self, y: np.ndarray, mask: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
        """γ (float64, NaN on land) from the standardized target."""
        f = np.asarray(y, dtype=np.float64) * self.std + self.mean
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            if self.kind in _MAPS:
                g = _MAPS[self.kind][1](f)
            else:
                if prior is None:
                    raise ValueError(f"target {self.kind} needs its prior")
                g = prior * np.exp(f)
        return np.where(np.asarray(mask, bool), g, np.nan)

    def eps(self, pred, true):
        """ε = γ̂²/γ² − 1 from standardized predicted and true targets (torch tensors or numpy arrays)."""
        s, m = self.std, self.mean
        if self.kind in ("log_gamma", *PRIOR_TARGETS):
            return _expm1(2.0 * s * (pred - true))
        p, t = pred * s + m, true * s + m
        if self.kind == "gamma":
            return (p / t) ** 2 - 1.0
        if self.kind == "gamma2":
            return p / t - 1.0
        return (t / p) ** 2 - 1.0  # inv_gamma

    def to_dict(self) -> dict:
        return {"kind": self.kind, "mean": self.mean, "std": self.std, "exact_small": self.exact_small}

    @classmethod
    def from_dict(cls, d: dict) -> TargetTransform:
        return cls(d["kind"], d.get("mean", 0.0), d.get("std", 1.0), d.get("exact_small", 0))


def _expm1(x):
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return torch.expm1(x)
    except ImportError:  # pragma: no cover
        pass
    return np.expm1(x)
