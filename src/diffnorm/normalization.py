"""Normalization coefficients γ (SPEC §2): brute force, fast exact, randomized, analytic, images.

The fast exact method is series selected inversion (:mod:`diffnorm.selinv`); probing, below, is kept
for grids whose nested-dissection fronts would be too large for it.

With ``S = I + W^{-1/2} K W^{-1/2}`` and ``G = S^{-M/2}`` the variances are
``v_i = ‖G e_i‖² / W_i`` and ``γ_i = v_i^{-1/2}``. All methods return a ``(ny, nx)`` field
with NaN on land.

The fast exact method ("probing") uses that the columns ``G e_i`` of the implicit diffusion
kernel decay exponentially with distance. Cells on a lattice of spacing ``(d_y, d_x)`` share
a colour; one probe ``y = G Σ_{i∈c} e_i`` per colour holds well-separated bumps, and
``‖G e_i‖²`` is the sum of ``y²`` over the lattice cell (Voronoi rectangle) around ``i``. The
spacing is chosen from the measured decay of the slowest-decaying columns so that the neglected
tails are below ``tol/10`` relative; afterwards a few dozen cells (slowest-decaying, largest
rim mass, random) are recomputed by brute force and the spacing grows until they agree to
``tol``. The cost is ``d_y·d_x`` probes (``M/2`` solves each) instead of one column per cell.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np

from .grid import Grid
from .operator import DiffusionOperator, check_steps

METHODS = ("exact", "bruteforce", "randomized", "analytic", "images")


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, unit="col")


def _operator(grid_or_op: Grid | DiffusionOperator, steps: int | None) -> DiffusionOperator:
    if isinstance(grid_or_op, DiffusionOperator):
        if steps is not None and check_steps(steps) != grid_or_op.steps:
            raise ValueError(f"operator was built with steps={grid_or_op.steps}, not {steps}")
        return grid_or_op
    if steps is None:
        raise ValueError("steps (M) is required when a Grid is given")
    return DiffusionOperator(grid_or_op, steps)


def _gamma_from_sq_norms(op: DiffusionOperator, sq_norms: np.ndarray) -> np.ndarray:
    """γ_i = sqrt(W_i / ‖G e_i‖²) scattered onto the grid (NaN on land)."""
    return op.grid.to_field(np.sqrt(op.w / sq_norms))


# -- brute force ------------------------------------------------------------------------
def column_sq_norms(op: DiffusionOperator, cells: np.ndarray, block: int = 256,
                    progress: bool = False) -> np.ndarray:
    """``‖G e_i‖²`` for the given ocean-cell indices, one column each, in blocks."""
    cells = np.asarray(cells, dtype=np.int64)
    n = op.grid.n_ocean
    out = np.empty(cells.size)
    with _progress(cells.size, "bruteforce", progress) as bar:
        for start in range(0, cells.size, block):
            idx = cells[start:start + block]
            rhs = np.zeros((n, idx.size))
            rhs[idx, np.arange(idx.size)] = 1.0
            g = op.s_power_inv(rhs, op.half_steps)
            out[start:start + block] = np.einsum("ij,ij->j", g, g)
            bar.update(idx.size)
    return out


def bruteforce_normalization(grid: Grid | DiffusionOperator, steps: int | None = None, *,
                             block: int = 256, progress: bool = False) -> np.ndarray:
    """Reference γ: one column ``G e_i`` per ocean cell (SPEC §2 'exact', plain)."""
    op = _operator(grid, steps)
    sq = column_sq_norms(op, np.arange(op.grid.n_ocean), block=block, progress=progress)
    return _gamma_from_sq_norms(op, sq)


# -- fast exact (probing) -----------------------------------------------------------------
@dataclass
class ProbingReport:
    """What the fast exact method did, so users can see the tolerance it met."""

    spacing: tuple[int, int]
    n_probes: int
    checked_cells: int
    max_checked_error: float
    tol: float
    algorithm: str = "probing"


def _lattice(n: int, spacing: int, periodic: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Split 0..n-1 into tiles of width >= spacing (periodic wrap kept >= spacing too).

    Returns (tile of each index, offset of each index in its tile, number of offsets).
    Cells with the same offset ("colour") are at least ``spacing`` apart.
    """
    spacing = max(1, min(spacing, n))
    if periodic:
        n_tiles = max(1, n // spacing)
        starts = (np.arange(n_tiles) * n) // n_tiles
    else:
        starts = np.arange(0, n, spacing)
    tile = np.searchsorted(starts, np.arange(n), side="right") - 1
    offset = np.arange(n) - starts[tile]
    return tile, offset, int(offset.max()) + 1


def _owner(n: int, centres_tile: np.ndarray, centres_pos: np.ndarray, periodic: bool) -> np.ndarray:
    """For every index 0..n-1, the tile of the nearest centre (1-D Voronoi, periodic aware)."""
    pos = np.arange(n)[:, None]
    dist = np.abs(pos - centres_pos[None, :])
    if periodic:
        dist = np.minimum(dist, n - dist)
    return centres_tile[np.argmin(dist, axis=1)]


def _tail_spacing(op: DiffusionOperator, columns: np.ndarray, cells: np.ndarray, tol: float) -> tuple[int, int]:
    """Spacing (d_y, d_x) beyond which the given columns ``g = G e_i`` hold < ``tol`` of their mass.

    Measured on the real columns (coasts included): the smallest radius r per axis with
    ``Σ_{|Δ|>=r} g² <= tol·‖g‖²``; the lattice spacing is ``2r+1``.
    """
    grid = op.grid
    jj, ii = np.nonzero(grid.mask)
    ny, nx = grid.shape
    spacing = [1, 1]
    axes = ((jj, ny, grid.periodic_y), (ii, nx, grid.periodic_x))
    for col, cell in enumerate(cells):
        g2 = columns[:, col] ** 2
        total = g2.sum()
        for axis, (coord, size, periodic) in enumerate(axes):
            delta = np.abs(coord - coord[cell])
            if periodic:
                delta = np.minimum(delta, size - delta)
            tail = np.bincount(delta, weights=g2, minlength=size)[::-1].cumsum()[::-1]  # Σ_{|Δ|>=r}
            ok = np.nonzero(tail <= tol * total)[0]
            radius = int(ok[0]) if ok.size else size
            spacing[axis] = max(spacing[axis], 2 * radius + 1)
    return spacing[0], spacing[1]


def _worst_decay_cells(grid: Grid, count: int) -> np.ndarray:
    """Ocean cells with the largest diffusivity/area ratio (slowest kernel decay)."""
    area = np.where(grid.mask, grid.area, np.inf)
    ratio_x = np.where(grid.active_x, grid.diff_x, 0.0) / area
    ratio_y = np.where(grid.active_y, grid.diff_y, 0.0) / area
    index = np.full(grid.shape, -1)
    index[grid.mask] = np.arange(grid.n_ocean)
    picks = []
    for ratio in (ratio_x, ratio_y, ratio_x + ratio_y):
        order = np.argsort(ratio, axis=None)[::-1]
        cells = index.ravel()[order]
        picks.extend(cells[cells >= 0][:count].tolist())
    return np.unique(np.array(picks, dtype=np.int64))


class _Lattice:
    """Colouring of the grid by a lattice of spacing (d_y, d_x) and the Voronoi rectangles."""

    def __init__(self, grid: Grid, spacing: tuple[int, int]):
        ny, nx = grid.shape
        self.grid = grid
        self.tile_y, self.off_y, self.ncy = _lattice(ny, spacing[0], grid.periodic_y)
        self.tile_x, self.off_x, self.ncx = _lattice(nx, spacing[1], grid.periodic_x)
        self.jj, self.ii = np.nonzero(grid.mask)
        self.colour = self.off_y[self.jj] * self.ncx + self.off_x[self.ii]
        self.n_tiles_x = int(self.tile_x.max()) + 1
        self.n_regions = (int(self.tile_y.max()) + 1) * self.n_tiles_x
        self.own_tile = self.tile_y[self.jj] * self.n_tiles_x + self.tile_x[self.ii]

    @property
    def n_colours(self) -> int:
        return self.ncy * self.ncx

    def regions(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """For colour c: the lattice rectangle (tile id) of each ocean cell, and whether the
        cell lies on the rim of its rectangle (where a bump's tail meets its neighbours')."""
        cy, cx = divmod(int(c), self.ncx)
        grid = self.grid
        centres_y = np.nonzero(self.off_y == cy)[0]
        centres_x = np.nonzero(self.off_x == cx)[0]
        own_y = _owner(grid.shape[0], self.tile_y[centres_y], centres_y, grid.periodic_y)
        own_x = _owner(grid.shape[1], self.tile_x[centres_x], centres_x, grid.periodic_x)
        rim_y = (own_y != np.roll(own_y, 1)) | (own_y != np.roll(own_y, -1))
        rim_x = (own_x != np.roll(own_x, 1)) | (own_x != np.roll(own_x, -1))
        rim = rim_y[self.jj] | rim_x[self.ii]
        return own_y[self.jj] * self.n_tiles_x + own_x[self.ii], rim


def _probe_sq_norms(op: DiffusionOperator, lattice: _Lattice, cells: np.ndarray | None = None,
                    block: int = 256, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Probing estimate of ``‖G e_i‖²`` for ``cells`` (all ocean cells when None), and for each
    the fraction of its bump's mass on the rim of its rectangle (an error indicator)."""
    n = op.grid.n_ocean
    cells = np.arange(n) if cells is None else np.asarray(cells)
    wanted = np.zeros(n, dtype=bool)
    wanted[cells] = True
    colours = np.unique(lattice.colour[cells])  # colours without ocean cells are never solved
    sq = np.zeros(n)
    rim_mass = np.zeros(n)
    with _progress(colours.size, "exact (probing)", progress) as bar:
        for start in range(0, colours.size, block):
            batch = colours[start:start + block]
            rhs = (lattice.colour[:, None] == batch[None, :]).astype(np.float64)
            y2 = op.s_power_inv(rhs, op.half_steps) ** 2
            for col, c in enumerate(batch):
                region, rim = lattice.regions(c)
                sums = np.bincount(region, weights=y2[:, col], minlength=lattice.n_regions)
                rims = np.bincount(region[rim], weights=y2[rim, col], minlength=lattice.n_regions)
                members = np.nonzero((lattice.colour == c) & wanted)[0]
                sq[members] = sums[lattice.own_tile[members]]
                rim_mass[members] = rims[lattice.own_tile[members]]
            bar.update(batch.size)
    return sq[cells], rim_mass[cells] / sq[cells]


@dataclass
class SelectedInversionReport:
    """What the series selected inversion did: a direct method, checked against brute force on a few cells."""

    max_front: int
    checked_cells: int
    max_checked_error: float
    tol: float
    algorithm: str = "selinv"


#: "auto" uses series selected inversion while its estimated memory stays below this many bytes
SELINV_MAX_MEMORY = 4 * 2**30


def exact_normalization(grid: Grid | DiffusionOperator, steps: int | None = None, *,
                        tol: float = 1e-12, algorithm: str = "auto", block: int = 256, check_cells: int = 16,
                        progress: bool = False, return_report: bool = False):
    """Fast exact γ: relative error in γ² below ``tol`` (default 1e-12) against brute force.

    ``algorithm``:

    - ``"selinv"``: series selected inversion (:mod:`diffnorm.selinv`), a direct method — every
      ``diag(S^{-M})`` from one nested-dissection factorization of ``S − νI`` in truncated power series;
      only roundoff (≈ 1e-14 measured; it grows with the condition number of ``S``, i.e. with the largest
      diffusivity/area: 1e-13 for scale-free diffusivities up to 1e2, 1e-9 at 1e6). ``check_cells`` random cells
      and the cells of largest diffusivity/area are recomputed by brute force; should one differ by more than
      ``tol`` the result is discarded and probing is used instead.
    - ``"probing"``: lattice probing (below), for grids too large for selinv's dense fronts.
    - ``"auto"`` (default): selinv unless its estimated memory exceeds :data:`SELINV_MAX_MEMORY` (4 GiB).

    ``return_report=True`` also returns a :class:`SelectedInversionReport` or :class:`ProbingReport`.
    """
    if not 0 < tol < 1:
        raise ValueError(f"tol must be in (0, 1), got {tol}")
    if algorithm not in ("auto", "selinv", "probing"):
        raise ValueError(f"unknown exact algorithm {algorithm!r}; choose auto, selinv or probing")
    from . import selinv

    g = grid.grid if isinstance(grid, DiffusionOperator) else grid
    plan = selinv.build_plan(g.mask, bool(g.periodic_x), bool(g.periodic_y)) if algorithm != "probing" else None
    if algorithm == "auto":
        m = steps if steps is not None else grid.steps
        algorithm = "selinv" if plan.memory_bytes(check_steps(m)) <= SELINV_MAX_MEMORY else "probing"
    if algorithm == "probing":
        return probing_normalization(grid, steps, tol=tol, block=block, check_cells=check_cells,
                                     progress=progress, return_report=return_report)
    op = _operator(grid, steps)
    sq = selinv.selinv_sq_norms(op.grid, op.steps, progress=progress)
    rng = np.random.default_rng(0)
    checks = rng.choice(op.grid.n_ocean, size=min(check_cells, op.grid.n_ocean), replace=False)
    if check_cells > 0:  # and the cells of largest diffusivity/area, where roundoff grows with κ(S)
        checks = np.union1d(checks, _worst_decay_cells(op.grid, max(1, check_cells // 4)))
    error = 0.0
    if checks.size:
        reference = column_sq_norms(op, checks, block=block)
        error = float(np.max(np.abs(sq[checks] - reference) / reference))
        if not error <= tol:  # never seen; NaN-safe
            return probing_normalization(op, tol=tol, block=block, check_cells=check_cells,
                                         progress=progress, return_report=return_report)
    report = SelectedInversionReport(plan.max_front, int(checks.size), error, tol)
    gamma = _gamma_from_sq_norms(op, sq)
    return (gamma, report) if return_report else gamma


def probing_normalization(grid: Grid | DiffusionOperator, steps: int | None = None, *,
                          tol: float = 1e-12, block: int = 256, check_cells: int = 16,
                          progress: bool = False, return_report: bool = False):
    """Fast exact γ by lattice probing; relative error in γ² below ``tol`` (default 1e-12).

    1. The spacing comes from the measured tails of the slowest-decaying columns.
    2. All cells are probed; each gets an error indicator (its bump's mass on the rim of its
       rectangle, where neighbouring bumps overlap).
    3. The ``check_cells`` cells with the largest indicator, as many random cells and the
       slowest-decaying ones are recomputed by brute force; if any differs by more than ``tol``
       the spacing grows by 25 % and probing is redone. Checked cells keep their brute-force values.
    Falls back to brute force when the lattice would need nearly as many probes as cells.
    ``return_report=True`` also returns a :class:`ProbingReport`.
    """
    if not 0 < tol < 1:
        raise ValueError(f"tol must be in (0, 1), got {tol}")
    op = _operator(grid, steps)
    grid = op.grid
    ny, nx = grid.shape
    slow = _worst_decay_cells(grid, 4)
    rhs = np.zeros((grid.n_ocean, slow.size))
    rhs[slow, np.arange(slow.size)] = 1.0
    columns = op.s_power_inv(rhs, op.half_steps)
    # measured: a tail threshold of τ leaves errors up to ~3τ, so aim at tol/10
    spacing = _tail_spacing(op, columns, slow, tol / 10)
    rng = np.random.default_rng(0)
    random_cells = rng.choice(grid.n_ocean, size=min(check_cells, grid.n_ocean), replace=False)
    while True:
        lattice = _Lattice(grid, spacing)
        n_probes = int(np.unique(lattice.colour).size)
        if n_probes >= 0.9 * grid.n_ocean:
            gamma = bruteforce_normalization(op, block=block, progress=progress)
            report = ProbingReport(spacing, grid.n_ocean, 0, 0.0, tol)
            return (gamma, report) if return_report else gamma
        sq, indicator = _probe_sq_norms(op, lattice, block=block, progress=progress)
        checks = np.union1d(np.union1d(slow, random_cells), np.argsort(indicator)[::-1][:check_cells])
        reference = column_sq_norms(op, checks, block=block)
        error = float(np.max(np.abs(sq[checks] - reference) / reference))
        if error <= tol:
            break
        spacing = (min(ny, max(spacing[0] + 2, int(spacing[0] * 1.25))),
                   min(nx, max(spacing[1] + 2, int(spacing[1] * 1.25))))
    sq[checks] = reference
    report = ProbingReport(spacing, n_probes, int(checks.size), error, tol)
    gamma = _gamma_from_sq_norms(op, sq)
    return (gamma, report) if return_report else gamma


# -- randomized -------------------------------------------------------------------------
def randomized_normalization(grid: Grid | DiffusionOperator, steps: int | None = None, *,
                             samples: int = 1000, seed: int | None = 0, block: int = 256,
                             progress: bool = False) -> np.ndarray:
    """Weaver et al. (2021): ``η = L^{1/2} W^{-1/2} z``, ``v̂ = mean η²`` (error ≈ sqrt(2/N) in v)."""
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    op = _operator(grid, steps)
    rng = np.random.default_rng(seed)
    n = op.grid.n_ocean
    acc = np.zeros(n)
    with _progress(samples, "randomized", progress) as bar:
        for start in range(0, samples, block):
            m = min(block, samples - start)
            z = rng.standard_normal((n, m))
            # η = W^{-1/2} S^{-k} W^{1/2} W^{-1/2} z = W^{-1/2} S^{-k} z
            g = op.s_power_inv(z, op.half_steps)
            acc += np.einsum("ij,ij->i", g, g)
            bar.update(m)
    sq = acc / samples  # estimate of ‖G e_i‖² = W_i v_i
    return _gamma_from_sq_norms(op, sq)


# -- analytic ---------------------------------------------------------------------------
def _cell_centred(face: np.ndarray, active: np.ndarray, axis: int) -> np.ndarray:
    """Mean of a cell's two faces on an axis, active faces preferred, raw faces otherwise."""
    own = face
    prev = np.roll(face, 1, axis=axis)
    own_ok = active
    prev_ok = np.roll(active, 1, axis=axis)
    num = np.where(own_ok, own, 0.0) + np.where(prev_ok, prev, 0.0)
    cnt = own_ok.astype(float) + prev_ok.astype(float)
    raw = np.where(np.isfinite(own) & (own >= 0), own, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, num / np.maximum(cnt, 1), raw)


def analytic_normalization(grid: Grid, steps: int) -> np.ndarray:
    """Infinite uniform domain: ``γ ≈ sqrt(4π(M−1)·sqrt(diff_x·diff_y))`` (a baseline, not a result)."""
    steps = check_steps(steps)
    kx = _cell_centred(grid.diff_x, grid.active_x, axis=1)
    ky = _cell_centred(grid.diff_y, grid.active_y, axis=0)
    gamma = np.sqrt(4.0 * math.pi * (steps - 1) * np.sqrt(kx * ky))
    return np.where(grid.mask, gamma, np.nan)


def _run_length(active: np.ndarray, axis: int, backward: bool, cap: int, periodic: bool) -> np.ndarray:
    """For each cell, how many cells can be reached through consecutive active faces in one direction along
    ``axis`` (at most ``cap``). ``active[k]`` is the face crossed when leaving cell ``k`` in that direction."""
    a = np.moveaxis(active, axis, -1)
    if backward:
        a = a[..., ::-1]
    n = a.shape[-1]
    if periodic:  # a run may wrap around: look at two copies
        a = np.concatenate([a, a], axis=-1)
    idx = np.arange(a.shape[-1])
    stop = np.where(a, a.shape[-1] + cap, idx)  # first inactive face at or after k
    nxt = np.minimum.accumulate(stop[..., ::-1], axis=-1)[..., ::-1]
    d = np.minimum(nxt - idx, cap)[..., :n]
    if backward:
        d = d[..., ::-1]
    return np.moveaxis(d, -1, axis)


def _wall_distances(grid: Grid, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Uncapped run lengths to the next wall forward/backward along ``axis`` for the ocean cells (cached per mask:
    they do not depend on the diffusivities, and prediction runs the images prior on many fields of one grid)."""
    from .cache import cached

    def compute():
        active = grid.active_x if axis == 1 else grid.active_y
        periodic = grid.periodic_x if axis == 1 else grid.periodic_y
        cap = 2 * grid.shape[axis] + 1
        return (_run_length(active, axis, False, cap, periodic)[grid.mask],
                _run_length(np.roll(active, 1, axis), axis, True, cap, periodic)[grid.mask])

    return cached("wall_distances", grid.mask, grid.periodic_x, grid.periodic_y, compute, int(axis), keep=8)


def _scale_free_centred(grid: Grid, axis: int) -> np.ndarray:
    """Cell-centred ``diff / sqrt(area·area′)`` on one axis (mean of the cell's active faces; 0 with none):
    the diffusivity in cells², the only thing γ²/W depends on besides the area ratios."""
    active, diff = (grid.active_x, grid.diff_x) if axis == 1 else (grid.active_y, grid.diff_y)
    with np.errstate(invalid="ignore", divide="ignore"):
        sf = np.where(active, diff / np.sqrt(grid.area * np.roll(grid.area, -1, axis)), 0.0)
    count = active.astype(float) + np.roll(active, 1, axis).astype(float)
    return np.where(count > 0, (sf + np.roll(sf, 1, axis)) / np.maximum(count, 1.0), 0.0)


def _ive_integer_order(order: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``I_n(x)·e^{-x}`` for integer orders ``n ≥ 1``: SciPy's ``i0e``/``i1e`` for n ≤ 2, Debye's uniform asymptotic
    expansion (4 terms, single precision) above — relative error below 2.3e-4 at n = 3, 2e-5 from n = 10 on, values
    below 1e-37 flushed to 0, and 16× faster than ``ive``, which matters because the image series evaluates it
    for every coastal cell at every quadrature node."""
    from scipy.special import i0e, i1e, ive

    shape = np.broadcast_shapes(order.shape, x.shape)
    if len(shape) == 2 and np.ndim(order) == 2 and np.shape(order)[1] == 1:  # one order per row: split rows
        order, x = np.broadcast_to(order, (shape[0], 1)), np.broadcast_to(x, shape)
    else:
        order, x = np.broadcast_to(order, shape).reshape(-1, 1), np.broadcast_to(x, shape).reshape(-1, 1)
    out = np.empty(x.shape)
    low = order[:, 0] <= 2
    if low.any():  # orders 1, 2 by the specialised i0e/i1e (4x faster than ive); I₂ = I₀ − (2/x)·I₁
        xl, ol = x[low], order[low]
        one = i1e(xl)
        with np.errstate(divide="ignore", invalid="ignore"):
            two = i0e(xl) - 2.0 * one / xl
        tiny = (ol == 2) & (xl < 0.1)  # the recurrence cancels for small x: SciPy's ive there
        vals = np.where(ol == 1, one, two)
        if tiny.any():
            vals[tiny] = ive(2, xl[tiny])
        out[low] = vals
    # single precision for the expansion: 5× faster (SIMD transcendental functions) and its rounding (2e-5) stays
    # below the 4-term expansion's own error (2.3e-4 at n = 3); the image series is summed in double
    rest = ~low if low.any() else slice(None)  # rows of order ≥ 3 (a slice: no copy when that is all of them)
    nu, xh = order[rest].astype(np.float32), x[rest].astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        # in place, a few float32 buffers: the arrays hold every (coastal cell, image) pair × quadrature node
        z = xh / nu
        r = z * z
        r += 1.0
        np.sqrt(r, out=r)
        p = 1.0 / r
        p2 = p * p
        u1 = _horner(p2, (-5.0, 3.0))  # p (3 − 5p²) / 24
        u1 *= p / 24.0
        u2 = _horner(p2, (385.0, -462.0, 81.0))  # p² (81 − 462p² + 385p⁴) / 1152
        u2 *= p2 / 1152.0
        u3 = _horner(p2, (-425425.0, 765765.0, -369603.0, 30375.0))  # p³ (30375 − … − 425425p⁶) / 414720
        u3 *= p * p2 / 414720.0
        series = u3  # 1 + (u1 + (u2 + u3/ν)/ν)/ν
        for term in (u2, u1, 1.0):
            series /= nu
            series += term
        # ν(η − z) with η = sqrt(1+z²) + ln(z / (1 + sqrt(1+z²))), written without cancellation
        high = r + z
        np.reciprocal(high, out=high)
        np.add(r, 1.0, out=p)  # p is not needed any more: its buffer takes 1 + r
        np.divide(z, p, out=z)
        np.log(z, out=z)
        high += z
        high *= nu
        np.exp(high, out=high)
        high *= series
        r *= nu
        r *= np.float32(2.0 * math.pi)
        np.sqrt(r, out=r)
        high /= r  # x = 0: ln 0 = −inf, so 0
    out[rest] = high
    return out.reshape(shape)


#: A&S 9.8.1 (I₀(x), x ≤ 3.75, in powers of (x/3.75)², highest first) and 9.8.2 (√x·e^{-x}·I₀(x), x ≥ 3.75, in
#: powers of 3.75/x): relative error below 2e-7 in exact arithmetic
_I0_SMALL = (0.0045813, 0.0360768, 0.2659732, 1.2067492, 3.0899424, 3.5156229, 1.0)
_I0_LARGE = (0.00392377, -0.01647633, 0.02635537, -0.02057706, 0.00916281, -0.00157565, 0.00225319, 0.01328592,
             0.39894228)


def _horner(x: np.ndarray, coefficients) -> np.ndarray:
    """The polynomial with these coefficients (highest power first) at ``x``, in one new buffer of x's dtype."""
    acc = np.full_like(x, coefficients[0])
    for c in coefficients[1:]:
        acc *= x
        acc += c
    return acc


def _i0e_single(x: np.ndarray) -> np.ndarray:
    """``I₀(x)·e^{-x}`` for ``x ≥ 0`` in single precision (relative error below 1e-6): the images prior's free
    lattice term at every ocean cell and quadrature node, 1.8× faster than SciPy's double-precision ``i0e``; its
    error is far below the quadrature's own (4e-4)."""
    x = np.asarray(x, dtype=np.float32)
    cut = np.float32(3.75)
    s = np.minimum(x, cut) / cut
    small = _horner(s * s, _I0_SMALL)
    small *= np.exp(-x)
    big = np.maximum(x, cut)
    large = _horner(cut / big, _I0_LARGE)
    large /= np.sqrt(big)
    return np.where(x <= cut, small, large).astype(np.float64)


#: grids with at least this many ocean cells compute the images prior's two axes in two threads
IMAGES_PARALLEL_CELLS = 4096


def image_normalization(grid: Grid, steps: int, *, nodes: int | None = None, reach: float = 40.0,
                        reflections: int = 3) -> np.ndarray:
    """Infinite uniform LATTICE with each cell's local diffusivity, corrected for coasts by the method of images
    along the grid axes — a much better physics prior than :func:`analytic_normalization` (cheap, not exact).

    On an infinite uniform lattice with diffusivities κx, κy (in cells², :func:`_scale_free_centred`),
    ``(I+S)^{-M}`` at lag (a, b) is ``1/Γ(M) ∫ t^{M-1} e^{-t} Ĩ_a(2tκx) Ĩ_b(2tκy) dt`` (Ĩ = e^{-z} I: the
    exponentially scaled modified Bessel function; ``(1+s)^{-M}`` as a Laplace integral, whose exponential is
    separable), evaluated by Gauss–Laguerre quadrature. A wall (Neumann) at ``d`` cells east of a cell mirrors it
    at lag ``2d+1``; walls on both sides add the images of a channel (``reflections`` orders). The x and y image
    series multiply: exact for a rectangle of uniform diffusivity, an approximation for diagonal coasts and
    varying diffusivity (mean |ε| about 4e-2 on 1° sphere fields against 0.3 for the analytic formula). Images
    farther than ``reach·sqrt(κ)`` cells are negligible and skipped; a periodic line without walls adds the
    images one period away. ``nodes`` (default 6 for M ≥ 8, 24 below): quadrature error about 4e-4 in γ² at
    M = 10, far below the approximation's own.
    """
    from scipy.special import gammaln, roots_genlaguerre

    steps = check_steps(steps)
    ocean = grid.mask
    if nodes is None:
        nodes = 6 if steps >= 8 else 24
    t, w = roots_genlaguerre(int(nodes), steps - 1)
    w = w * math.exp(-gammaln(steps))
    kappa = [_scale_free_centred(grid, axis) for axis in (1, 0)]
    kmax = max(float(k[ocean].max()) if ocean.any() else 0.0 for k in kappa)
    cap = int(math.ceil(reach * math.sqrt(max(kmax, 1e-12)) / 2.0)) + 2

    def series(axis: int, k: np.ndarray) -> np.ndarray:
        active = grid.active_x if axis == 1 else grid.active_y
        periodic = grid.periodic_x if axis == 1 else grid.periodic_y
        fwd, bwd = (np.minimum(r, cap) for r in _wall_distances(grid, axis))
        kk = k[ocean]
        z = 2.0 * t[None, :] * kk[:, None]
        free = _i0e_single(z)
        total = free.copy()
        cut = reach * np.sqrt(kk) + 2.0
        width = fwd + bwd + 1
        closed = (fwd < cap) & (bwd < cap)
        period = grid.mask.shape[axis]
        ring = np.broadcast_to(periodic and active.all(axis=axis, keepdims=True), active.shape)[ocean]
        lags = []  # (lag, where it applies, how many images sit at that lag)
        for d in (fwd, bwd):
            lags.append((2.0 * d + 1.0, d < cap, 1.0))
            lags += [(2.0 * r * width + 2.0 * d + 1.0, closed, 1.0) for r in range(1, reflections + 1)]
        lags += [(2.0 * r * width, closed, 2.0) for r in range(1, reflections + 1)]  # one image on each side
        lags += [(np.full(kk.shape, float(r * period)), ring, 2.0) for r in range(1, reflections + 1)]
        # every (cell, lag) pair within reach in one call, summed per cell: few large array operations
        cells, orders, counts = [], [], []
        for lag, ok, count in lags:
            sel = np.flatnonzero(ok & (lag < cut))
            cells.append(sel)
            orders.append(lag[sel])
            counts.append(np.full(sel.size, count))
        cells = np.concatenate(cells)
        if cells.size:
            images = _ive_integer_order(np.concatenate(orders)[:, None], z[cells]) * np.concatenate(counts)[:, None]
            for node in range(z.shape[1]):
                total[:, node] += np.bincount(cells, images[:, node], minlength=kk.size)
        return total, free

    if ocean.sum() >= IMAGES_PARALLEL_CELLS:  # the axes are independent: a thread each (SciPy releases the GIL)
        from .selinv import thread_pool

        (sx, fx), (sy, fy) = thread_pool().map(series, (1, 0), kappa)
    else:
        (sx, fx), (sy, fy) = series(1, kappa[0]), series(0, kappa[1])
    diag = (sx * sy) @ w  # [(I+S)^{-M}]_ii
    gamma = np.full(ocean.shape, np.nan)
    gamma[ocean] = np.sqrt(grid.area[ocean] / diag)
    # the variance with each axis's walls alone and with none (three vectors: cheap to keep for every grid that
    # lives, unlike the (cells × nodes) series); the wall factors are their logarithms, taken when asked for
    _WALL_FACTORS.setdefault(grid, {})[int(steps)] = _ImageSeries(ocean, (sx * fy) @ w, (fx * sy) @ w, (fx * fy) @ w)
    return gamma


class _ImageSeries:
    """What :func:`image_wall_factors` needs of the images prior of one grid, kept so that it can derive the wall
    factors later without recomputing the prior (and the prior need not derive them: most models do not use
    them)."""

    def __init__(self, ocean, walls_x_only, walls_y_only, free):
        self.ocean, self.variances = ocean, (walls_x_only, walls_y_only, free)
        self._walls: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def walls(self) -> tuple[np.ndarray, np.ndarray]:
        if self._walls is None:
            *one_axis, free = self.variances
            walls = []
            for v in one_axis:
                f = np.zeros(self.ocean.shape)
                with np.errstate(divide="ignore", invalid="ignore"):
                    f[self.ocean] = np.log(v / free)
                walls.append(np.where(np.isfinite(f), f, 0.0))
            self._walls, self.variances = (walls[0], walls[1]), None
        return self._walls


#: the images prior's wall data (:class:`_ImageSeries`) of the grids it last ran on, per M (weakly keyed: they go
#: with the grid)
_WALL_FACTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def image_wall_factors(grid: Grid, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ln(v_x / v_free), ln(v_y / v_free))`` on the ocean (0 on land): how much the images prior's walls along
    x alone, and along y alone, raise the variance ``[(I+S)^{-M}]_ii`` over the infinite lattice (0 far from
    walls; ln 2 at a straight wall for long kernels). Input channels for a CNN that corrects the prior: they tell
    it what the prior assumed, which is where it is most wrong (narrow gaps and diagonal coasts, whose
    images are counted as if every wall were infinite). Taken from the last :func:`image_normalization` of this
    very grid object (the prior is computed first on prediction, so this is free), computed otherwise."""
    steps = check_steps(steps)
    found = _WALL_FACTORS.get(grid, {}).get(steps)
    if found is None:
        image_normalization(grid, steps)
        found = _WALL_FACTORS[grid][steps]
    return found.walls


def normalize(grid: Grid, steps: int, method: str = "exact", *, samples: int = 1000,
              seed: int | None = 0, tol: float = 1e-12, algorithm: str = "auto", progress: bool = False) -> np.ndarray:
    """Dispatch on ``method`` (one of :data:`METHODS`); ``algorithm`` picks the exact method's algorithm."""
    if method == "exact":
        return exact_normalization(grid, steps, tol=tol, algorithm=algorithm, progress=progress)
    if method == "bruteforce":
        return bruteforce_normalization(grid, steps, progress=progress)
    if method == "randomized":
        return randomized_normalization(grid, steps, samples=samples, seed=seed, progress=progress)
    if method == "analytic":
        return analytic_normalization(grid, steps)
    if method == "images":
        return image_normalization(grid, steps)
    raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
