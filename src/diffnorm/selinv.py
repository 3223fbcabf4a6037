"""Exact variances by selected inversion in truncated power series ("series selected inversion").

The exact normalization needs ``diag(S^{-M})`` with ``S = I + W^{-1/2} K W^{-1/2}`` (SPEC §2). Since

    (S − νI)^{-1} = Σ_k ν^k S^{-(k+1)},

``diag(S^{-M})`` is the ``ν^{M-1}`` Taylor coefficient of ``diag((S − νI)^{-1})``. A multifrontal
factorization of ``S − νI`` followed by Takahashi's selected inversion, carried out in the ring of
polynomials in ν truncated after ``ν^{M-1}`` (every scalar becomes its ``M`` Taylor coefficients,
products are truncated convolutions), gives every diagonal entry of the inverse at once: a DIRECT
method with no tolerance to choose, only roundoff. It is well conditioned because ``S ≥ I``: every
Schur complement is analytic for ``|ν| < 1`` and has Taylor coefficients of norm ≤ 1.

The elimination order is a geometric nested dissection of the ``(ny, nx)`` rectangle: a periodic axis is
first cut open along its line with the fewest ocean cells, then each rectangle is split across its longer
side by the row/column, within its middle 30 %, that crosses the fewest ocean cells (coasts make cheap
separators), down to leaves of ``DEFAULT_LEAF`` cells. Only ocean cells are unknowns. The tree and its index
maps depend only on the mask, so they are cached; fronts of one height in the tree are padded (≤ 25 %) to a
few shared shapes and processed as batches (one BLAS call per Taylor coefficient), padding slots being
decoupled unknowns with ``S_ii = 1``.

Cost: dense operations on the fronts (separators of ≈ ``min(ny, nx)`` cells at the top), about
``M(M+1)/2`` real matrix products per ring product — ``O(M² · min(ny,nx)³)``, independent of the
diffusion length, whereas probing costs one probe per cell of the kernel's footprint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .grid import Grid
from .operator import check_steps

DEFAULT_LEAF = 24


# -- truncated power series arithmetic --------------------------------------------------------
# A "ring matrix" is an array (M, batch, rows, cols): coefficient k of ν^k in position [k]. Coefficient-major, so
# that scattering a batch of fronts into their parents is one gather/scatter per call over all coefficients.
_POOL: dict = {}  # pid -> thread pool for the large ring products (a forked child gets a fresh one)
PARALLEL_FLOPS = 4e6  # products below this many flops per coefficient stay on the calling thread


def thread_pool():
    """The package's small thread pool (ring products here, the images prior's axes, the prior's exact small
    components), one per process: a pool inherited through fork() has no threads and would hang. Tasks in it must
    not wait on other tasks of it."""
    import os

    pid = os.getpid()
    pool = _POOL.get(pid)
    if pool is None:
        from concurrent.futures import ThreadPoolExecutor

        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        try:  # honour the usual thread cap (Dask workers get OMP_NUM_THREADS=1: one core each)
            workers = min(workers, int(os.environ.get("OMP_NUM_THREADS", workers)))
        except ValueError:
            pass
        _POOL.clear()
        pool = _POOL[pid] = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="diffnorm")
    return pool


def ring_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``C = A B`` truncated after ``ν^{M-1}``: ``C_k = Σ_{i≤k} A_i B_{k-i}``, one matmul per k.

    The M products are independent: large ones run in a thread pool (NumPy releases the GIL; BLAS itself is
    kept single-threaded, see :func:`diag_inverse_powers`)."""
    m, g, s, t = a.shape
    u = b.shape[-1]
    a_cat = a.transpose(1, 2, 0, 3).reshape(g, s, m * t)  # [A_0 A_1 … A_{M-1}]
    b_rev = b[::-1].transpose(1, 0, 2, 3).reshape(g, m * t, u)  # [B_{M-1}; …; B_0]
    out = np.empty((m, g, s, u))

    def product(k: int) -> None:
        np.matmul(a_cat[:, :, : (k + 1) * t], b_rev[:, (m - 1 - k) * t:], out=out[k])

    if 2.0 * g * s * t * u * m < PARALLEL_FLOPS:
        for k in range(m):
            product(k)
    else:  # the largest products last-first, so that the pool's threads finish together
        list(thread_pool().map(product, range(m - 1, -1, -1)))
    return out


def ring_inv(p: np.ndarray) -> np.ndarray:
    """``P^{-1}`` for square ring matrices with invertible ``P_0``:
    ``X_0 = P_0^{-1}``, ``X_k = −X_0 Σ_{1≤i≤k} P_i X_{k-i}``."""
    m, g, s, _ = p.shape
    out = np.empty_like(p)
    x0 = np.linalg.inv(p[0])
    out[0] = x0
    p_cat = p.transpose(1, 2, 0, 3).reshape(g, s, m * s)
    x_rev = np.empty((g, m * s, s))  # block M-1-j holds X_j
    x_rev[:, (m - 1) * s:] = x0
    for k in range(1, m):
        acc = p_cat[:, :, s: (k + 1) * s] @ x_rev[:, (m - k) * s:]
        xk = -(x0 @ acc)
        out[k] = xk
        x_rev[:, (m - 1 - k) * s: (m - k) * s] = xk
    return out


def ring_transpose(a: np.ndarray) -> np.ndarray:
    """Transpose of every coefficient (the ring is commutative: (AB)ᵀ = BᵀAᵀ holds coefficient-wise)."""
    return a.swapaxes(-1, -2)


# -- elimination tree --------------------------------------------------------------------------
@dataclass
class _Node:
    level: int  # depth in the dissection while building, then height above the leaves
    inner: np.ndarray  # flat cell ids eliminated at this node (separator, or the whole leaf)
    ring: np.ndarray  # flat cell ids of the node's boundary (cells of ancestors' separators)
    parent: int = -1
    slot: int = 0  # which child of its parent (siblings are scattered into the parent separately)
    group: int = -1
    index: int = -1  # position inside its group's batch


@dataclass
class _Group:
    """Nodes of one height (levels above the leaves) whose fronts are padded to the same shape, processed as
    one batch (a node's children always have a smaller height, so batches run children first).

    Front layout: ``n_inner`` slots for the eliminated cells (padding: decoupled unknowns with
    ``S_ii = 1``), then ``n_ring`` boundary slots, the last of which is a "trash" slot that receives the
    (exactly zero) updates of the children's padding slots."""

    height: int
    n_inner: int
    n_ring: int
    nodes: list[int] = field(default_factory=list)
    asm: tuple[np.ndarray, ...] = ()  # assembly of S: batch index, row, column, index into the values
    links: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    out: np.ndarray | None = None  # (batch, n_inner): flat cell id of each inner slot, N for padding

    @property
    def size(self) -> int:
        return self.n_inner + self.n_ring


@dataclass
class Plan:
    shape: tuple[int, int]
    periodic: tuple[bool, bool]
    groups: list[_Group]  # deepest first: children before parents
    cache: dict = field(default_factory=dict, repr=False)  # scatter/gather indices per number of steps

    @property
    def max_front(self) -> int:
        """Largest dense front (cells): memory ~ 8·M·max_front² bytes per front, time ~ M²·max_front³."""
        return max(g.size for g in self.groups)

    def memory_bytes(self, steps: int) -> int:
        """Estimated peak memory for ``steps`` Taylor coefficients: the kept ``P^{-1}`` and ``P^{-1}Q`` of every
        front (the "factor") plus a few of the largest fronts in flight."""
        factor = sum(len(g.nodes) * g.n_inner * g.size for g in self.groups)
        largest = max(len(g.nodes) * g.size * g.size for g in self.groups)
        return 8 * steps * (factor + 4 * largest)

    def flops(self, steps: int) -> float:
        """Floating-point operations of the numerical phase (dense ring products and inverses)."""
        pairs = steps * (steps + 1) / 2
        total = 0.0
        for g in self.groups:
            s, b = g.n_inner, g.n_ring
            total += len(g.nodes) * (s**3 + 2 * s * s * b + 2 * s * b * b)
        return 2.0 * pairs * total


def _neighbours(ny: int, nx: int, periodic_x: bool, periodic_y: bool):
    """Flat neighbour ids (−1 where none) and the index of the coupling value in [diag, east, north]."""
    n = ny * nx
    cells = np.arange(n)
    jj, ii = np.divmod(cells, nx)
    east = np.where(ii < nx - 1, cells + 1, np.where(periodic_x, cells - (nx - 1), -1))
    west = np.where(ii > 0, cells - 1, np.where(periodic_x, cells + (nx - 1), -1))
    north = np.where(jj < ny - 1, cells + nx, np.where(periodic_y, cells - (ny - 1) * nx, -1))
    south = np.where(jj > 0, cells - nx, np.where(periodic_y, cells + (ny - 1) * nx, -1))
    return [(east, n + cells), (west, n + west), (north, 2 * n + cells), (south, 2 * n + south)]


def _best_cut(ocean_per_line: np.ndarray, lo: int, hi: int) -> int:
    """Index in [lo, hi) of the line with the fewest ocean cells within the middle 30 % (coasts make cheap
    separators), ties broken towards the middle."""
    n = hi - lo
    a, b = lo + (n - 1) // 2 - int(0.15 * n), lo + (n - 1) // 2 + int(0.15 * n) + 1
    a, b = max(a, lo), min(b, hi)
    cand = np.arange(a, b)
    middle = lo + (n - 1) / 2
    return int(cand[np.lexsort((np.abs(cand - middle), ocean_per_line[cand]))[0]])


def _build_nodes(mask: np.ndarray, periodic_x: bool, periodic_y: bool, leaf: int) -> list[_Node]:
    """Nested dissection of the rectangle by whole rows/columns, each chosen near the middle where it crosses
    the fewest ocean cells; a periodic axis is first cut open along its line with the fewest ocean cells."""
    ny, nx = mask.shape
    nodes: list[_Node] = []
    cy = 0
    cx = int(np.argmin(mask.sum(axis=0))) if periodic_x else 0
    if periodic_y:
        cy = int(np.argmin(mask.sum(axis=1)))
    # work in coordinates rolled so that the cuts are row 0 / column 0; flat ids are mapped back at the end
    rolled = np.roll(mask, (-cy, -cx), axis=(0, 1))
    row_ids = (np.arange(ny) + cy) % ny
    col_ids = (np.arange(nx) + cx) % nx

    def rect(y0, y1, x0, x1):
        return (row_ids[y0:y1, None] * nx + col_ids[None, x0:x1]).ravel()

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
            xm = _best_cut(rolled[y0:y1].sum(axis=0), x0, x1)
            nodes.append(_Node(depth, rect(y0, y1, xm, xm + 1), ring(y0, y1, x0, x1), parent, slot))
            split(y0, y1, x0, xm, me, 0, depth + 1)
            split(y0, y1, xm + 1, x1, me, 1, depth + 1)
        else:
            ym = _best_cut(rolled[:, x0:x1].sum(axis=1), y0, y1)
            nodes.append(_Node(depth, rect(ym, ym + 1, x0, x1), ring(y0, y1, x0, x1), parent, slot))
            split(y0, ym, x0, x1, me, 0, depth + 1)
            split(ym + 1, y1, x0, x1, me, 1, depth + 1)

    if periodic_x or periodic_y:
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


def _padded(size: int) -> int:
    """Round a front dimension up (≤ 25 % padding) so that similar nodes share a batch."""
    if size <= 4:
        return max(size, 1)
    step = 1 << (size.bit_length() - 3)
    return -(-size // step) * step


def build_plan(mask: np.ndarray, periodic_x: bool, periodic_y: bool, leaf: int = DEFAULT_LEAF) -> Plan:
    """Elimination tree over the ocean cells of ``mask``, batches and index maps (cached per mask: data sets reuse
    one mask for many diffusivity fields)."""
    from .cache import cached

    mask = np.array(mask, dtype=bool)
    return cached("selinv_plan", mask, periodic_x, periodic_y,
                  lambda: _make_plan(mask, bool(periodic_x), bool(periodic_y), int(leaf)), int(leaf), keep=4)


def _make_plan(mask: np.ndarray, periodic_x: bool, periodic_y: bool, leaf: int) -> Plan:
    ny, nx = mask.shape
    n = ny * nx
    ocean = mask.ravel()
    nodes = _build_nodes(mask, periodic_x, periodic_y, leaf)
    for node in nodes:  # land cells are not unknowns
        node.inner = node.inner[ocean[node.inner]]
        node.ring = node.ring[ocean[node.ring]]
    height = np.zeros(len(nodes), dtype=np.int64)
    for k in range(len(nodes) - 1, 0, -1):  # children come after their parent in `nodes`
        p = nodes[k].parent
        height[p] = max(height[p], height[k] + 1)
    groups: dict[tuple[int, int, int], _Group] = {}
    for k, node in enumerate(nodes):
        node.level = int(height[k])
        key = (node.level, _padded(node.inner.size), _padded(node.ring.size) + 1)
        grp = groups.setdefault(key, _Group(*key))
        node.index = len(grp.nodes)
        grp.nodes.append(k)
    group_list = sorted(groups.values(), key=lambda g: g.height)
    for gi, grp in enumerate(group_list):
        for k in grp.nodes:
            nodes[k].group = gi

    neighbours = _neighbours(ny, nx, periodic_x, periodic_y)
    posmap = np.full(n, -1, dtype=np.int64)

    def front_positions(node: _Node, grp: _Group) -> None:
        posmap[node.inner] = np.arange(node.inner.size)
        posmap[node.ring] = grp.n_inner + np.arange(node.ring.size)

    for grp in group_list:
        s = grp.n_inner
        bi, rows, cols, src = [], [], [], []
        links: dict[tuple[int, int], list] = {}
        out = np.full((len(grp.nodes), s), n, dtype=np.int64)
        for node_id in grp.nodes:
            node = nodes[node_id]
            out[node.index, : node.inner.size] = node.inner
            front_positions(node, grp)
            pc = np.arange(node.inner.size)
            pad = np.arange(node.inner.size, s)
            parts = [(pc, pc, node.inner), (pad, pad, np.full(pad.size, 3 * n))]  # diagonal; padding: 1
            for nb, value in neighbours:
                q = nb[node.inner]
                pq = np.where(q >= 0, posmap[np.maximum(q, 0)], -1)
                ok = pq >= 0  # neighbours eliminated further down were assembled there
                v = value[node.inner]
                parts.append((pc[ok], pq[ok], v[ok]))
                in_ring = ok & (pq >= s)  # couplings with the boundary: both triangles here
                parts.append((pq[in_ring], pc[in_ring], v[in_ring]))
            for r, c, v in parts:
                rows.append(r), cols.append(c), src.append(v)
            bi.append((node.index, sum(r.size for r, _, _ in parts)))
            posmap[node.inner] = -1
            posmap[node.ring] = -1
            if node.parent >= 0:
                parent = nodes[node.parent]
                pgrp = group_list[parent.group]
                front_positions(parent, pgrp)
                pos = np.full(grp.n_ring, pgrp.size - 1, dtype=np.int64)  # padding -> the parent's trash slot
                pos[: node.ring.size] = posmap[node.ring]
                posmap[parent.inner] = -1
                posmap[parent.ring] = -1
                if np.any(pos < 0):  # pragma: no cover - a bug in the tree, never a user error
                    raise AssertionError("boundary of a node not in its parent's front")
                links.setdefault((node.slot, parent.group), []).append((node.index, parent.index, pos))
        batch = np.repeat([i for i, _ in bi], [c for _, c in bi])
        grp.asm = (batch.astype(np.int64),) + tuple(np.concatenate(a).astype(np.int64) for a in (rows, cols, src))
        grp.out = out
        grp.links = [(slot, pg, np.array([c for c, _, _ in items]), np.array([p for _, p, _ in items]),
                      np.stack([pos for _, _, pos in items]))
                     for (slot, pg), items in links.items()]
    covered = np.concatenate([g.out.ravel() for g in group_list])
    if not np.array_equal(np.sort(covered[covered < n]), np.flatnonzero(ocean)):  # pragma: no cover
        raise AssertionError("nested dissection does not eliminate every ocean cell exactly once")
    return Plan((ny, nx), (periodic_x, periodic_y), group_list)


# -- numerical phase ---------------------------------------------------------------------------
def _coupling_values(grid: Grid) -> np.ndarray:
    """[diag, east, north] of ``S`` on the full rectangle (land: decoupled), flattened, then a 1 for padding."""
    ocean = grid.mask
    area = np.where(ocean, grid.area, 1.0)
    kx = np.where(grid.active_x, grid.diff_x, 0.0)
    ky = np.where(grid.active_y, grid.diff_y, 0.0)
    ax = kx / np.sqrt(area * np.roll(area, -1, axis=1))
    ay = ky / np.sqrt(area * np.roll(area, -1, axis=0))
    diag = 1.0 + (kx + np.roll(kx, 1, axis=1) + ky + np.roll(ky, 1, axis=0)) / area
    return np.concatenate([diag.ravel(), -ax.ravel(), -ay.ravel(), [1.0]])


def _link_index(plan: Plan, gi: int, link: int) -> np.ndarray:
    """Indices into a parent batch's (batch·size·size) front entries of the (pos × pos) sub-blocks that a link
    scatters to / gathers from, in the order of the children's (batch, b, b) blocks (cached with the plan)."""
    key = (gi, link)
    idx = plan.cache.get(key)
    if idx is None:
        _slot, pg, _child_idx, parent_idx, pos = plan.groups[gi].links[link]
        size = plan.groups[pg].size
        lin = pos[:, :, None] * size + pos[:, None, :]
        idx = plan.cache[key] = (parent_idx[:, None, None] * (size * size) + lin).ravel()
    return idx


def diag_inverse_powers(grid: Grid, steps: int, leaf: int = DEFAULT_LEAF, progress: bool = False) -> np.ndarray:
    """``diag(S^{-steps})`` on the ``(ny, nx)`` grid, flattened (values on land are meaningless).

    BLAS runs single-threaded here: the products are many and small, and multi-threaded OpenBLAS spin-waits
    when another process holds a core (measured: 32 s instead of 1.5 s on a shared 2-core machine); the large
    products are spread over a thread pool instead (:func:`ring_matmul`)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _diag_inverse_powers(grid, steps, leaf, progress)


def _diag_inverse_powers(grid: Grid, steps: int, leaf: int, progress: bool) -> np.ndarray:
    from tqdm.auto import tqdm

    m = check_steps(steps)
    ny, nx = grid.shape
    n = ny * nx
    plan = build_plan(grid.mask, bool(grid.periodic_x), bool(grid.periodic_y), leaf)
    values = _coupling_values(grid)
    groups = plan.groups
    # bottom-up: assemble, add the children's updates, eliminate the inner cells
    fronts: dict[int, np.ndarray] = {}
    kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # group -> (P^{-1}, G = P^{-1} Q)
    plan_flops = plan.flops(m)
    bar = tqdm(total=int(plan_flops), desc="exact (selected inversion)", unit="flop", unit_scale=True, leave=False,
               disable=not progress)

    def tick(grp: _Group) -> None:  # both passes: about half of a group's work each
        s_, b_ = grp.n_inner, grp.n_ring
        bar.update(int(len(grp.nodes) * (s_**3 + 2 * s_ * s_ * b_ + 2 * s_ * b_ * b_) * m * (m + 1) / 2))

    for gi, grp in enumerate(groups):
        tick(grp)
        s, size, cnt = grp.n_inner, grp.size, len(grp.nodes)
        f = fronts.pop(gi, None)
        if f is None:
            f = np.zeros((m, cnt, size, size))
        bi, rows, cols, src = grp.asm
        f[0] += np.bincount((bi * size + rows) * size + cols, weights=values[src],
                            minlength=cnt * size * size).reshape(cnt, size, size)
        idx = np.arange(s)
        f[1, :, idx, idx] -= 1.0  # − ν I on the eliminated cells
        q = np.ascontiguousarray(f[:, :, :s, s:])
        pinv = ring_inv(np.ascontiguousarray(f[:, :, :s, :s]))
        gmat = ring_matmul(pinv, q)
        kept[gi] = (pinv, gmat)
        if not grp.links:
            continue
        update = f[:, :, s:, s:] - ring_matmul(ring_transpose(q), gmat)
        for slot in (0, 1):  # siblings separately: no parent written twice in one operation
            for li, (link_slot, pg, child_idx, _parent_idx, _pos) in enumerate(grp.links):
                if link_slot != slot:
                    continue
                pgrp = groups[pg]
                pf = fronts.get(pg)
                if pf is None:
                    pf = fronts[pg] = np.zeros((m, len(pgrp.nodes), pgrp.size, pgrp.size))
                flat = pf.reshape(m, -1)
                flat[:, _link_index(plan, gi, li)] += update[:, child_idx].reshape(m, -1)
    # top-down: selected inversion
    out = np.empty(n + 1)
    zfronts: dict[int, np.ndarray] = {}
    last = m - 1
    children: dict[int, list] = {}
    for cgi, cgrp in enumerate(groups):
        for li, link in enumerate(cgrp.links):
            children.setdefault(link[1], []).append((cgi, li, link))
    for gi in range(len(groups) - 1, -1, -1):
        grp = groups[gi]
        tick(grp)
        s, b, cnt = grp.n_inner, grp.n_ring, len(grp.nodes)
        pinv, gmat = kept.pop(gi)
        zbb = zfronts.pop(gi, None)
        if zbb is None:  # the root: nothing above it
            zbb = np.zeros((m, cnt, b, b))
        z_ib = -ring_matmul(gmat, zbb)  # Z_IB = −P^{-1} Q Z_BB
        # diag(Z_II) = diag(P^{-1} − Z_IB Gᵀ), coefficient M−1 only
        diag = np.diagonal(pinv[last], axis1=-2, axis2=-1) - np.einsum("agib,agib->gi", z_ib, gmat[::-1])
        out[grp.out] = diag
        if gi not in children:
            continue
        z = np.empty((m, cnt, s + b, s + b))
        z[:, :, :s, :s] = pinv - ring_matmul(z_ib, ring_transpose(gmat))
        z[:, :, :s, s:] = z_ib
        z[:, :, s:, :s] = ring_transpose(z_ib)
        z[:, :, s:, s:] = zbb
        flat = z.reshape(m, -1)
        for cgi, li, (_slot, _pg, child_idx, _parent_idx, _pos) in children[gi]:
            cgrp = groups[cgi]
            dest = zfronts.get(cgi)
            if dest is None:
                dest = zfronts[cgi] = np.empty((m, len(cgrp.nodes), cgrp.n_ring, cgrp.n_ring))
            dest[:, child_idx] = flat[:, _link_index(plan, cgi, li)].reshape(m, -1, cgrp.n_ring, cgrp.n_ring)
    bar.close()
    return out[:n]


def selinv_sq_norms(grid: Grid, steps: int, leaf: int = DEFAULT_LEAF, progress: bool = False) -> np.ndarray:
    """``‖S^{-M/2} e_i‖² = (S^{-M})_ii`` for the ocean cells (in ocean-vector order)."""
    return diag_inverse_powers(grid, steps, leaf, progress)[np.flatnonzero(grid.mask.ravel())]
