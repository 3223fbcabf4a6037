"""Subcommands of the core engine: ``grid``, ``normalize``, ``metrics``."""

from __future__ import annotations

import argparse
import time


def register(sub: argparse._SubParsersAction) -> None:
    grid = sub.add_parser("grid", help="build grid files")
    grid_sub = grid.add_subparsers(dest="grid_command", metavar="KIND")
    coast = grid_sub.add_parser("coast", help="regular lat-lon box with real coastlines and a random diffusivity")
    coast.add_argument("--lat", nargs=2, type=float, required=True, metavar=("A", "B"))
    coast.add_argument("--lon", nargs=2, type=float, required=True, metavar=("C", "D"))
    coast.add_argument("--res", type=float, required=True, help="resolution in degrees")
    coast.add_argument("--seed", type=int, default=0)
    coast.add_argument("--steps", type=int, default=10, help="M the length scales are tuned for")
    coast.add_argument("--min-length", type=float, default=1.5,
                       help="smallest length scale, cells (default %(default)s)")
    coast.add_argument("--max-length", type=float, default=4.0,
                       help="largest length scale, cells (default %(default)s)")
    coast.add_argument("--polar-limit", type=float, default=None, metavar="DEG",
                       help="land on every cell whose centre is poleward of ±DEG, as in the seed study's sphere and "
                            "sphere-1deg's training grids (65-75)")
    coast.add_argument("-o", "--output", required=True)
    coast.set_defaults(func=_grid_coast)

    norm = sub.add_parser("normalize", help="normalization coefficients of a grid file")
    norm.add_argument("grid")
    norm.add_argument("--steps", type=int, required=True, help="M, even and >= 2")
    norm.add_argument("--method", choices=("exact", "bruteforce", "randomized", "analytic", "images"), default="exact",
                      help="images: infinite-lattice formula with coast images (fast prior, about 5%% error)")
    norm.add_argument("--samples", type=int, default=1000, help="randomized: number of samples N")
    norm.add_argument("--seed", type=int, default=0, help="randomized: random seed")
    norm.add_argument("--tol", type=float, default=1e-12, help="exact: relative tolerance in gamma^2")
    norm.add_argument("--algorithm", choices=("auto", "selinv", "probing"), default="auto",
                      help="exact: series selected inversion (direct, default) or lattice probing (huge grids)")
    norm.add_argument("--no-progress", action="store_true")
    norm.add_argument("-o", "--output", required=True)
    norm.set_defaults(func=_normalize)

    met = sub.add_parser("metrics", help="SPEC §3 errors of an estimate against a reference")
    met.add_argument("estimate")
    met.add_argument("reference")
    met.set_defaults(func=_metrics)


def _grid_coast(args: argparse.Namespace) -> int:
    import numpy as np

    from ..families import coast_geometry, grid_from_kappa
    from ..generators import kappa_dt_from_length_scale, length_scale_field
    from ..operator import check_steps

    steps = check_steps(args.steps)
    geo, ocean = coast_geometry(tuple(args.lat), tuple(args.lon), args.res)
    if args.polar_limit is not None:
        if not 0 < args.polar_limit <= 90:
            raise ValueError(f"--polar-limit must be in (0, 90] degrees, got {args.polar_limit:g}")
        ocean &= (np.abs(geo.lat) < args.polar_limit)[:, None]
        if not ocean.any():
            raise ValueError(f"no ocean cell equatorward of ±{args.polar_limit:g}° in this box")
    length = length_scale_field(geo.shape, args.seed, args.min_length, args.max_length, periodic_x=geo.periodic_x)
    kdt = kappa_dt_from_length_scale(length, geo.dx(), geo.dy(), steps)
    attrs = {"family": "coast", "seed": args.seed, "length_min_cells": args.min_length,
             "length_max_cells": args.max_length, "steps_tuned": steps}
    if args.polar_limit is not None:
        attrs["polar_limit"] = args.polar_limit
    grid = grid_from_kappa(geo, ocean, kdt, attrs=attrs)
    grid.to_netcdf(args.output)
    print(f"wrote {args.output}: {grid.shape[0]}x{grid.shape[1]} cells, {grid.n_ocean} ocean")
    return 0


def _normalize(args: argparse.Namespace) -> int:
    from ..grid import read_grid
    from ..io import write_gamma
    from ..normalization import normalize

    grid = read_grid(args.grid)
    start = time.perf_counter()
    gamma = normalize(grid, args.steps, args.method, samples=args.samples, seed=args.seed, tol=args.tol,
                      algorithm=args.algorithm, progress=not args.no_progress)
    elapsed = time.perf_counter() - start
    extra = {"samples": args.samples, "seed": args.seed} if args.method == "randomized" else {}
    write_gamma(args.output, grid, gamma, method=args.method, steps=args.steps, **extra)
    print(f"{args.method}: {grid.n_ocean} ocean cells in {elapsed:.3f} s -> {args.output}")
    return 0


def _metrics(args: argparse.Namespace) -> int:
    from ..io import read_gamma_pair
    from ..metrics import sample_metrics

    est, ref = read_gamma_pair(args.estimate, args.reference)
    m = sample_metrics(est, ref)
    for key, value in m.items():
        print(f"{key:>6s} {value:.6e}")
    return 0
