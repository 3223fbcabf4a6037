"""Exact variances by selected inversion in truncated power series ("series selected inversion").

The exact normalization needs ``diag(S^{-M})`` with ``S = I + W^{-1/2} K W^{-1/2}`` (SPEC §2). Since

    (S − νI)^{-1} = Σ_k ν^k S^{-(k+1)},

``diag(S^{-M})`` is the ``ν^{M-1}`` Taylor coefficient of ``diag((S − νI)^{-1})``. A multifrontal
factorization of ``S − νI`` followed by Takahashi's selected inversion, carried out in the ring of
polynomials in ν truncated after ``ν^{M-1}`` (every scalar becomes its ``M`` Taylor coefficients,
products are truncated convolutions), gives every diagonal entry of the inverse at once: a DIRECT
method with no tolerance to choose, only roundoff. It is well conditioned because ``S ≥ I``: every
Schur complement is analytic for ``|ν| < 1`` and has Taylor coefficients of norm ≤ 1.

The elimination order is a geometric nested dissection of the full ``(ny, nx)`` rectangle (cut along the
longer side, recursively, down to small leaves; a periodic axis is first cut open along its first
column/row). Land cells are kept as decoupled unknowns (``S_ii = 1``) so that the elimination tree
depends only on the grid's shape and periodicity: it is built once and cached, and fronts of the same
shape are processed as one batch (one BLAS call per Taylor coefficient for a whole tree level).

Cost: dense operations on the fronts (separators of ≈ ``min(ny, nx)`` cells at the top), about
``M(M+1)/2`` real matrix products per ring product — ``O(M² · min(ny,nx)³)``, independent of the
diffusion length, whereas probing costs one probe per cell of the kernel's footprint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .grid import Grid
from .operator import check_steps

DEFAULT_LEAF = 24


# -- truncated power series arithmetic --------------------------------------------------------
# A "ring matrix" is an array (batch, M, rows, cols): coefficient k of ν^k in position [:, k].
def ring_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``C = A B`` truncated after ``ν^{M-1}``: ``C_k = Σ_{i≤k} A_i B_{k-i}``, one matmul per k."""
    g, m, s, t = a.shape
    u = b.shape[-1]
    a_cat = a.transpose(0, 2, 1, 3).reshape(g, s, m * t)  # [A_0 A_1 … A_{M-1}]
    b_rev = b[:, ::-1].reshape(g, m * t, u)  # [B_{M-1}; …; B_0]
    out = np.empty((g, m, s, u))
    for k in range(m):
        np.matmul(a_cat[:, :, : (k + 1) * t], b_rev[:, (m - 1 - k) * t:], out=out[:, k])
    return out


def ring_inv(p: np.ndarray) -> np.ndarray:
    """``P^{-1}`` for square ring matrices with invertible ``P_0``:
    ``X_0 = P_0^{-1}``, ``X_k = −X_0 Σ_{1≤i≤k} P_i X_{k-i}``."""
    g, m, s, _ = p.shape
    out = np.empty_like(p)
    x0 = np.linalg.inv(p[:, 0])
    out[:, 0] = x0
    p_cat = p.transpose(0, 2, 1, 3).reshape(g, s, m * s)
    x_rev = np.empty((g, m * s, s))  # block M-1-j holds X_j
    x_rev[:, (m - 1) * s:] = x0
    for k in range(1, m):
        acc = p_cat[:, :, s: (k + 1) * s] @ x_rev[:, (m - k) * s:]
        xk = -(x0 @ acc)
        out[:, k] = xk
        x_rev[:, (m - 1 - k) * s: (m - k) * s] = xk
    return out


def ring_transpose(a: np.ndarray) -> np.ndarray:
    return a.swapaxes(-1, -2)


# -- elimination tree (depends only on shape and periodicity) ----------------------------------
@dataclass
class _Node:
    depth: int
    inner: np.ndarray  # flat cell ids eliminated at this node (separator, or the whole leaf)
    ring: np.ndarray  # flat cell ids of the node's boundary (cells of ancestors' separators)
    parent: int = -1
    slot: int = 0  # which child of its parent (siblings are scattered into the parent separately)
    group: int = -1
    index: int = -1  # position inside its group's batch


@dataclass
class _Group:
    """Nodes of one depth with the same front shape, processed as one batch."""

    depth: int
    n_inner: int
    n_ring: int
    nodes: list[int] = field(default_factory=list)
    # assembly of the original matrix: batch index, row, column, source value index
    asm: tuple[np.ndarray, ...] = ()
    # scatter into the parents: per (slot, parent group): (child batch idx, parent batch idx, positions)
    links: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)


@dataclass
class Plan:
    shape: tuple[int, int]
    periodic: tuple[bool, bool]
    groups: list[_Group]
    order: np.ndarray  # flat cell ids in the order diag values are produced
    order_slices: list[tuple[int, int]]  # per group: where its inner cells' diag values go in `order`

    @property
    def max_front(self) -> int:
        """Largest dense front (cells): memory ~ 8·M·max_front² bytes per front, time ~ M²·max_front³."""
        return max(g.n_inner + g.n_ring for g in self.groups)


def _neighbours(ny: int, nx: int, periodic_x: bool, periodic_y: bool):
    """Flat neighbour ids (−1 where none) and the index of the coupling value in [diag, east, north]."""
    n = ny * nx
    jj, ii = np.divmod(np.arange(n), nx)
    east = np.where(ii < nx - 1, np.arange(n) + 1, np.where(periodic_x, np.arange(n) - (nx - 1), -1))
    west = np.where(ii > 0, np.arange(n) - 1, np.where(periodic_x, np.arange(n) + (nx - 1), -1))
    north = np.where(jj < ny - 1, np.arange(n) + nx, np.where(periodic_y, np.arange(n) - (ny - 1) * nx, -1))
    south = np.where(jj > 0, np.arange(n) - nx, np.where(periodic_y, np.arange(n) + (ny - 1) * nx, -1))
    cells = np.arange(n)
    return [(east, n + cells), (west, n + west), (north, 2 * n + cells), (south, 2 * n + south)]


def _build_nodes(ny: int, nx: int, periodic_x: bool, periodic_y: bool, leaf: int) -> list[_Node]:
    nodes: list[_Node] = []

    def rect(y0, y1, x0, x1):
        return (np.arange(y0, y1)[:, None] * nx + np.arange(x0, x1)[None, :]).ravel()

    def ring(y0, y1, x0, x1):
        parts = []
        if y0 > 0:
            parts.append(rect(y0 - 1, y0, x0, x1))
        if y1 < ny:
            parts.append(rect(y1, y1 + 1, x0, x1))
        elif periodic_y and y0 > 0:
            parts.append(rect(0, 1, x0, x1))
        if x0 > 0:
            parts.append(rect(y0, y1, x0 - 1, x0))
        if x1 < nx:
            parts.append(rect(y0, y1, x1, x1 + 1))
        elif periodic_x and x0 > 0:
            parts.append(rect(y0, y1, 0, 1))
        return np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)

    def split(y0, y1, x0, x1, parent, slot, depth):
        h, w = y1 - y0, x1 - x0
        if h <= 0 or w <= 0:
            return
        me = len(nodes)
        if h * w <= leaf or (h <= 2 and w <= 2):
            nodes.append(_Node(depth, rect(y0, y1, x0, x1), ring(y0, y1, x0, x1), parent, slot))
            return
        if w >= h:
            xm = x0 + (w - 1) // 2
            nodes.append(_Node(depth, rect(y0, y1, xm, xm + 1), ring(y0, y1, x0, x1), parent, slot))
            split(y0, y1, x0, xm, me, 0, depth + 1)
            split(y0, y1, xm + 1, x1, me, 1, depth + 1)
        else:
            ym = y0 + (h - 1) // 2
            nodes.append(_Node(depth, rect(ym, ym + 1, x0, x1), ring(y0, y1, x0, x1), parent, slot))
            split(y0, ym, x0, x1, me, 0, depth + 1)
            split(ym + 1, y1, x0, x1, me, 1, depth + 1)

    if periodic_x or periodic_y:  # cut the periodic axes open along their first column / row
        cut = []
        if periodic_y:
            cut.append(rect(0, 1, 0, nx))
        if periodic_x:
            cut.append(rect(0, ny, 0, 1))
        nodes.append(_Node(0, np.unique(np.concatenate(cut)), np.empty(0, dtype=np.int64)))
        split(int(periodic_y), ny, int(periodic_x), nx, 0, 0, 1)
    else:
        split(0, ny, 0, nx, -1, 0, 0)
    return nodes


@lru_cache(maxsize=8)
def build_plan(ny: int, nx: int, periodic_x: bool, periodic_y: bool, leaf: int = DEFAULT_LEAF) -> Plan:
    """Elimination tree, batches and index maps for a ``(ny, nx)`` grid (cached: it does not depend on the
    mask or the diffusivities)."""
    n = ny * nx
    nodes = _build_nodes(ny, nx, periodic_x, periodic_y, leaf)
    groups: dict[tuple[int, int, int], _Group] = {}
    for k, node in enumerate(nodes):
        key = (node.depth, node.inner.size, node.ring.size)
        grp = groups.setdefault(key, _Group(*key))
        node.index = len(grp.nodes)
        grp.nodes.append(k)
    group_list = sorted(groups.values(), key=lambda g: -g.depth)  # deepest first: children before parents
    for gi, grp in enumerate(group_list):
        for k in grp.nodes:
            nodes[k].group = gi

    neighbours = _neighbours(ny, nx, periodic_x, periodic_y)
    posmap = np.full(n, -1, dtype=np.int64)
    order, order_slices, start = [], [], 0
    for grp in group_list:
        bi, rows, cols, src = [], [], [], []
        counted = 0
        links: dict[tuple[int, int], list] = {}
        for node_id in grp.nodes:
            node = nodes[node_id]
            front = np.concatenate([node.inner, node.ring])
            posmap[front] = np.arange(front.size)
            s = node.inner.size
            pc = np.arange(s)
            rows.append(pc), cols.append(pc), src.append(node.inner)  # diagonal
            for nb, value in neighbours:
                q = nb[node.inner]
                ok = q >= 0
                pq = np.where(ok, posmap[np.where(ok, q, 0)], -1)
                ok &= pq >= 0
                v = value[node.inner]
                rows.append(pc[ok]), cols.append(pq[ok]), src.append(v[ok])
                in_ring = ok & (pq >= s)  # couplings with the boundary: both triangles here
                rows.append(pq[in_ring]), cols.append(pc[in_ring]), src.append(v[in_ring])
            total = sum(r.size for r in rows[len(bi):])
            bi.extend(np.full(r.size, node.index) for r in rows[len(bi):])
            counted += total
            if node.parent >= 0:
                parent = nodes[node.parent]
                pfront = np.concatenate([parent.inner, parent.ring])
                posmap[front] = -1
                posmap[pfront] = np.arange(pfront.size)
                pos = posmap[node.ring]
                if np.any(pos < 0):  # pragma: no cover - a bug in the tree, never a user error
                    raise AssertionError("boundary of a node not in its parent's front")
                links.setdefault((node.slot, parent.group), []).append((node.index, parent.index, pos))
                posmap[pfront] = -1
            else:
                posmap[front] = -1
        grp.asm = tuple(np.concatenate(a).astype(np.int64) for a in (bi, rows, cols, src))
        grp.links = [(slot, pg, np.array([c for c, _, _ in items]), np.array([p for _, p, _ in items]),
                      np.stack([pos for _, _, pos in items]))
                     for (slot, pg), items in links.items()]
        inner = np.concatenate([nodes[k].inner for k in grp.nodes])
        order.append(inner)
        order_slices.append((start, start + inner.size))
        start += inner.size
    order_arr = np.concatenate(order)
    if not np.array_equal(np.sort(order_arr), np.arange(n)):  # pragma: no cover
        raise AssertionError("nested dissection does not cover every cell exactly once")
    return Plan((ny, nx), (periodic_x, periodic_y), group_list, order_arr, order_slices)


# -- numerical phase ---------------------------------------------------------------------------
def _coupling_values(grid: Grid) -> np.ndarray:
    """[diag, east, north] of ``S`` on the full rectangle (land: decoupled, diagonal 1), flattened."""
    ocean = grid.mask
    area = np.where(ocean, grid.area, 1.0)
    kx = np.where(grid.active_x, grid.diff_x, 0.0)
    ky = np.where(grid.active_y, grid.diff_y, 0.0)
    ax = kx / np.sqrt(area * np.roll(area, -1, axis=1))
    ay = ky / np.sqrt(area * np.roll(area, -1, axis=0))
    diag = 1.0 + (kx + np.roll(kx, 1, axis=1) + ky + np.roll(ky, 1, axis=0)) / area
    return np.concatenate([diag.ravel(), -ax.ravel(), -ay.ravel()])


def diag_inverse_powers(grid: Grid, steps: int, leaf: int = DEFAULT_LEAF) -> np.ndarray:
    """``diag(S^{-steps})`` on the whole ``(ny, nx)`` grid (values on land are meaningless)."""
    m = check_steps(steps)
    ny, nx = grid.shape
    plan = build_plan(ny, nx, bool(grid.periodic_x), bool(grid.periodic_y), leaf)
    values = _coupling_values(grid)
    groups = plan.groups
    # bottom-up: assemble, add the children's updates, eliminate the inner cells
    fronts: dict[int, np.ndarray] = {}
    kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # group -> (P^{-1}, G = P^{-1} Q)
    for gi, grp in enumerate(groups):
        s, b, cnt = grp.n_inner, grp.n_ring, len(grp.nodes)
        f = fronts.pop(gi, None)
        if f is None:
            f = np.zeros((cnt, m, s + b, s + b))
        bi, rows, cols, src = grp.asm
        np.add.at(f, (bi, 0, rows, cols), values[src])
        idx = np.arange(s)
        f[:, 1, idx, idx] -= 1.0  # − ν I on the eliminated cells
        pinv = ring_inv(np.ascontiguousarray(f[:, :, :s, :s]))
        gmat = ring_matmul(pinv, np.ascontiguousarray(f[:, :, :s, s:]))
        kept[gi] = (pinv, gmat)
        if b == 0:
            continue
        update = f[:, :, s:, s:] - ring_matmul(ring_transpose(f[:, :, :s, s:]), gmat)
        upd = update.transpose(0, 2, 3, 1)  # (batch, b, b, M) for fancy indexing
        # scatter each sibling slot separately so that no parent is written twice in one operation
        for slot in (0, 1):
            for link_slot, pg, child_idx, parent_idx, pos in grp.links:
                if link_slot != slot:
                    continue
                pf = fronts.get(pg)
                if pf is None:
                    size = groups[pg].n_inner + groups[pg].n_ring
                    pf = fronts[pg] = np.zeros((len(groups[pg].nodes), m, size, size))
                view = pf.transpose(0, 2, 3, 1)
                view[parent_idx[:, None, None], pos[:, :, None], pos[:, None, :]] += upd[child_idx]
    # top-down: selected inversion
    out = np.empty(ny * nx)
    zfronts: dict[int, np.ndarray] = {}
    last = m - 1
    for gi in range(len(groups) - 1, -1, -1):
        grp = groups[gi]
        s, b, cnt = grp.n_inner, grp.n_ring, len(grp.nodes)
        pinv, gmat = kept.pop(gi)
        start, stop = plan.order_slices[gi]
        diag_pinv = np.diagonal(pinv[:, last], axis1=-2, axis2=-1)
        if b == 0:
            z = pinv
            out[plan.order[start:stop]] = diag_pinv.ravel()
        else:
            zbb = zfronts.pop(gi)
            z_ib = -ring_matmul(gmat, zbb)  # Z_IB = −P^{-1} Q Z_BB
            # diag(Z_II) = diag(P^{-1}) − Σ_b Z_IB G^T, coefficient M−1 only
            diag = diag_pinv - np.einsum("gaib,gaib->gi", z_ib, gmat[:, ::-1])
            out[plan.order[start:stop]] = diag.ravel()
            needed = any(lk for g2 in groups for lk in g2.links if lk[1] == gi)
            if not needed:
                continue
            z = np.empty((cnt, m, s + b, s + b))
            z[:, :, :s, :s] = pinv - ring_matmul(z_ib, ring_transpose(gmat))
            z[:, :, :s, s:] = z_ib
            z[:, :, s:, :s] = ring_transpose(z_ib)
            z[:, :, s:, s:] = zbb
        # hand Z over the children's boundaries down
        zt = z.transpose(0, 2, 3, 1)
        for cgi, cgrp in enumerate(groups):
            for _slot, pg, child_idx, parent_idx, pos in cgrp.links:
                if pg != gi:
                    continue
                dest = zfronts.get(cgi)
                if dest is None:
                    dest = zfronts[cgi] = np.empty((len(cgrp.nodes), m, cgrp.n_ring, cgrp.n_ring))
                sub = zt[parent_idx[:, None, None], pos[:, :, None], pos[:, None, :]]
                dest[child_idx] = sub.transpose(0, 3, 1, 2)
    return out


def selinv_sq_norms(grid: Grid, steps: int, leaf: int = DEFAULT_LEAF) -> np.ndarray:
    """``‖S^{-M/2} e_i‖² = (S^{-M})_ii`` for the ocean cells (in ocean-vector order)."""
    return diag_inverse_powers(grid, steps, leaf)[np.flatnonzero(grid.mask.ravel())]
