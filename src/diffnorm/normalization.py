"""Normalization coefficients γ (SPEC §2): brute force, fast exact, randomized, analytic.

With ``S = I + W^{-1/2} K W^{-1/2}`` and ``G = S^{-M/2}`` the variances are
``v_i = ‖G e_i‖² / W_i`` and ``γ_i = v_i^{-1/2}``. All methods return a ``(ny, nx)`` field
with NaN on land.

The fast exact method ("probing") uses that the columns ``G e_i`` of the implicit diffusion
kernel decay exponentially with distance. Cells on a lattice of spacing ``(d_y, d_x)`` share
a colour; one probe ``y = G Σ_{i∈c} e_i`` per colour holds well-separated bumps, and
``‖G e_i‖²`` is the sum of ``y²`` over the lattice cell (Voronoi rectangle) around ``i``. The
spacing is chosen from the measured decay of the slowest-decaying columns so that the neglected
tails are below ``tol`` relative, and those columns are checked against brute force afterwards.
The cost is ``d_y·d_x`` probes instead of one column per ocean cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .grid import Grid
from .operator import DiffusionOperator, check_steps

METHODS = ("exact", "bruteforce", "randomized", "analytic")


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


def _decay_spacing(op: DiffusionOperator, probe_cells: np.ndarray, tol: float) -> tuple[int, int]:
    """Spacing (d_y, d_x) at which the slowest-decaying columns have a negligible tail.

    For each probe column g, find the smallest radius r (per axis) beyond which
    Σ g² < tol²·‖g‖²/16 ... measured on the real column (coasts included); the lattice spacing
    is 2r+1 so that neighbouring bumps overlap only in that tail.
    """
    grid = op.grid
    n = grid.n_ocean
    rhs = np.zeros((n, probe_cells.size))
    rhs[probe_cells, np.arange(probe_cells.size)] = 1.0
    g = op.s_power_inv(rhs, op.half_steps)
    jj, ii = np.nonzero(grid.mask)
    ny, nx = grid.shape
    spacing = [1, 1]
    for col, cell in enumerate(probe_cells):
        g2 = g[:, col] ** 2
        total = g2.sum()
        for axis, (coord, size, periodic) in enumerate(((jj, ny, grid.periodic_y), (ii, nx, grid.periodic_x))):
            delta = np.abs(coord - coord[cell])
            if periodic:
                delta = np.minimum(delta, size - delta)
            tail = np.bincount(delta, weights=g2, minlength=size)[::-1].cumsum()[::-1]  # Σ_{|Δ|>=r}
            # the neglected mass (own tail + a neighbour's bump) must stay below tol/4
            ok = np.nonzero(tail <= 0.25 * tol * total)[0]
            radius = int(ok[0]) if ok.size else size
            spacing[axis] = max(spacing[axis], 2 * radius + 1)
    return spacing[0], spacing[1]


def _worst_decay_cells(grid: Grid, count: int) -> np.ndarray:
    """Ocean cells with the largest diffusivity/area ratio (slowest kernel decay)."""
    ratio_x = np.where(grid.active_x, grid.diff_x, 0.0) / np.where(grid.mask, grid.area, np.inf)
    ratio_y = np.where(grid.active_y, grid.diff_y, 0.0) / np.where(grid.mask, grid.area, np.inf)
    index = np.full(grid.shape, -1)
    index[grid.mask] = np.arange(grid.n_ocean)
    picks = []
    for ratio in (ratio_x, ratio_y, ratio_x + ratio_y):
        order = np.argsort(ratio, axis=None)[::-1]
        cells = index.ravel()[order]
        picks.extend(cells[cells >= 0][:count].tolist())
    return np.unique(np.array(picks, dtype=np.int64))


def exact_normalization(grid: Grid | DiffusionOperator, steps: int | None = None, *,
                        tol: float = 1e-12, block: int = 256, check_cells: int = 4,
                        progress: bool = False, return_report: bool = False):
    """Fast exact γ by lattice probing; relative error in γ² below ``tol`` (default 1e-12).

    Falls back to brute force when the lattice would have as many probes as ocean cells.
    ``return_report=True`` also returns a :class:`ProbingReport` (spacing, probes, checked error).
    """
    if not 0 < tol < 1:
        raise ValueError(f"tol must be in (0, 1), got {tol}")
    op = _operator(grid, steps)
    grid = op.grid
    ny, nx = grid.shape
    probe_cells = _worst_decay_cells(grid, check_cells)
    dy, dx = _decay_spacing(op, probe_cells, tol)
    tile_y, off_y, ncy = _lattice(ny, dy, grid.periodic_y)
    tile_x, off_x, ncx = _lattice(nx, dx, grid.periodic_x)
    n_probes = ncy * ncx
    if n_probes >= grid.n_ocean:
        gamma = bruteforce_normalization(op, block=block, progress=progress)
        report = ProbingReport((dy, dx), grid.n_ocean, 0, 0.0, tol)
        return (gamma, report) if return_report else gamma

    jj, ii = np.nonzero(grid.mask)
    colour = off_y[jj] * ncx + off_x[ii]  # colour of each ocean cell
    n_tiles_x = int(tile_x.max()) + 1
    sq = np.zeros(grid.n_ocean)
    colours = np.arange(n_probes)
    with _progress(n_probes, "exact (probing)", progress) as bar:
        for start in range(0, n_probes, block):
            batch = colours[start:start + block]
            rhs = (colour[:, None] == batch[None, :]).astype(np.float64)
            y2 = op.s_power_inv(rhs, op.half_steps) ** 2
            for col, c in enumerate(batch):
                cy, cx = divmod(int(c), ncx)
                centres_y = np.nonzero(off_y == cy)[0]
                centres_x = np.nonzero(off_x == cx)[0]
                if centres_y.size == 0 or centres_x.size == 0:
                    continue
                own_y = _owner(ny, tile_y[centres_y], centres_y, grid.periodic_y)
                own_x = _owner(nx, tile_x[centres_x], centres_x, grid.periodic_x)
                region = own_y[jj] * n_tiles_x + own_x[ii]  # lattice cell owning each ocean cell
                sums = np.bincount(region, weights=y2[:, col], minlength=(int(tile_y.max()) + 1) * n_tiles_x)
                members = np.nonzero(colour == c)[0]
                sq[members] = sums[tile_y[jj[members]] * n_tiles_x + tile_x[ii[members]]]
            bar.update(batch.size)

    reference = column_sq_norms(op, probe_cells)
    max_err = float(np.max(np.abs(sq[probe_cells] - reference) / reference))
    gamma = _gamma_from_sq_norms(op, sq)
    report = ProbingReport((dy, dx), n_probes, int(probe_cells.size), max_err, tol)
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


def normalize(grid: Grid, steps: int, method: str = "exact", *, samples: int = 1000,
              seed: int | None = 0, tol: float = 1e-12, progress: bool = False) -> np.ndarray:
    """Dispatch on ``method`` (one of :data:`METHODS`)."""
    if method == "exact":
        return exact_normalization(grid, steps, tol=tol, progress=progress)
    if method == "bruteforce":
        return bruteforce_normalization(grid, steps, progress=progress)
    if method == "randomized":
        return randomized_normalization(grid, steps, samples=samples, seed=seed, progress=progress)
    if method == "analytic":
        return analytic_normalization(grid, steps)
    raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
