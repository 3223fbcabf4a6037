"""Implicit diffusion operator over the ocean cells (SPEC §2).

Everything is computed with the symmetric matrix ``S = I + W^{-1/2} K W^{-1/2}``:
``L₁ = (W+K)^{-1} W = W^{-1/2} S^{-1} W^{1/2}``, hence ``L^{1/2} = W^{-1/2} S^{-M/2} W^{1/2}``
and ``L^{1/2} W^{-1} L^{T/2} = W^{-1/2} S^{-M} W^{-1/2}``. ``S`` is factorized once (sparse
Cholesky, CHOLMOD through ``cholespy``) and the factor is reused for every right-hand side.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .grid import Grid


def check_steps(steps: int) -> int:
    """The number of implicit steps M must be an even integer >= 2 (L^{1/2} = L₁^{M/2})."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2 or steps % 2:
        raise ValueError(f"steps (M) must be an even integer >= 2, got {steps!r}")
    return int(steps)


def ocean_index(grid: Grid) -> np.ndarray:
    """(ny, nx) int array: position of each ocean cell in ocean vectors, -1 on land."""
    index = np.full(grid.shape, -1, dtype=np.int64)
    index[grid.mask] = np.arange(grid.n_ocean)
    return index


def stiffness_matrix(grid: Grid) -> sp.csr_matrix:
    """``K = Σ_f a_f (e_p − e_q)(e_p − e_q)ᵀ`` over active faces (no flux through coasts)."""
    index = ocean_index(grid)
    rows, cols, vals = [], [], []
    for active, diff, axis in ((grid.active_x, grid.diff_x, 1), (grid.active_y, grid.diff_y, 0)):
        p = index[active]
        q = np.roll(index, -1, axis=axis)[active]
        a = diff[active]
        rows += [p, q, p, q]
        cols += [p, q, q, p]
        vals += [a, a, -a, -a]
    n = grid.n_ocean
    if rows:
        K = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    else:  # pragma: no cover - no faces at all
        K = sp.coo_matrix((n, n))
    return K.tocsr()


class DiffusionOperator:
    """``L = L₁^M`` on a grid, with its square root and transpose, one factorization reused.

    Vectors live on ocean cells: shape ``(n_ocean,)`` or ``(n_ocean, m)`` for m at once.
    """

    def __init__(self, grid: Grid, steps: int):
        self.grid = grid
        self.steps = check_steps(steps)
        self.half_steps = self.steps // 2
        w = grid.area[grid.mask]
        self.w = w
        self.w_sqrt = np.sqrt(w)
        K = stiffness_matrix(grid)
        d = 1.0 / self.w_sqrt
        self.S = (sp.identity(grid.n_ocean, format="csr") + sp.diags(d) @ K @ sp.diags(d)).tocsr()
        self._factorize()

    def _factorize(self) -> None:
        from cholespy import CholeskySolverD, MatrixType

        coo = self.S.tocoo()
        self._solver = CholeskySolverD(
            self.S.shape[0],
            coo.row.astype(np.int32),
            coo.col.astype(np.int32),
            coo.data.astype(np.float64),
            MatrixType.COO,
        )

    # -- core -----------------------------------------------------------------------
    def solve_s(self, b: np.ndarray) -> np.ndarray:
        """``S^{-1} b`` for one vector or a block of columns."""
        b = np.ascontiguousarray(b, dtype=np.float64)
        x = np.empty_like(b)
        self._solver.solve(b, x)
        return x

    def s_power_inv(self, b: np.ndarray, power: int) -> np.ndarray:
        """``S^{-power} b`` by repeated solves with the same factor."""
        x = b
        for _ in range(power):
            x = self.solve_s(x)
        return x

    @staticmethod
    def _scale(values: np.ndarray, x: np.ndarray) -> np.ndarray:
        return values[:, None] * x if x.ndim == 2 else values * x

    # -- public operators -------------------------------------------------------------
    def apply_sqrt(self, x: np.ndarray) -> np.ndarray:
        """``L^{1/2} x = W^{-1/2} S^{-M/2} W^{1/2} x``."""
        y = self.s_power_inv(self._scale(self.w_sqrt, np.asarray(x, dtype=np.float64)), self.half_steps)
        return self._scale(1.0 / self.w_sqrt, y)

    def apply_sqrt_transpose(self, x: np.ndarray) -> np.ndarray:
        """``L^{T/2} x = W^{1/2} S^{-M/2} W^{-1/2} x``."""
        y = self.s_power_inv(self._scale(1.0 / self.w_sqrt, np.asarray(x, dtype=np.float64)), self.half_steps)
        return self._scale(self.w_sqrt, y)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``L x = L₁^M x``."""
        y = self.s_power_inv(self._scale(self.w_sqrt, np.asarray(x, dtype=np.float64)), self.steps)
        return self._scale(1.0 / self.w_sqrt, y)

    def apply_correlation(self, x: np.ndarray, gamma: np.ndarray) -> np.ndarray:
        """``C x = Γ L^{1/2} W^{-1} L^{T/2} Γ x`` with ``gamma`` on ocean cells."""
        y = self.apply_sqrt_transpose(self._scale(gamma, x))
        y = self.apply_sqrt(self._scale(1.0 / self.w, y))
        return self._scale(gamma, y)
