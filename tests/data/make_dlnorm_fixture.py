"""Build ``dlnorm_crop.nc`` from the seed study's sample (run once; the source stays outside the repo).

    .venv/bin/python tests/data/make_dlnorm_fixture.py /work/shared/data/seed-toy/sphere_polecontinent108.nc

The fixture is an untouched window of the file in its own format (same variable names and dims):
rows 18..161 (every ocean row, closed north and south by the polar continents) and the 70
columns 20..89 (longitudes 20-90°E). Values are stored as float32 (relative rounding 6e-8, far
below the labels' 1e-4 solver noise). The only change: ``alpha_j_minus`` on column 0 (the west
faces of the first column, which lead out of the window) is set to 0, so the window is closed
by walls in x. The labels ``norm_coeffs`` are the file's own; the cut changes the true γ only
near the two cut edges (measured below 1e-7 relative beyond 20 columns from them), so the test
compares the file's labels with our exact γ on columns 20..49 of the window only.
"""

import sys

import numpy as np
import xarray as xr

ROWS = slice(18, 162)
COLS = slice(20, 90)
MARGIN = 20


def main(src: str, dst: str = "tests/data/dlnorm_crop.nc") -> None:
    ds = xr.open_dataset(src)
    sub = ds[["norm_coeffs", "alpha_i_minus", "alpha_j_minus", "w"]].isel(lat=ROWS, lon=COLS).load()
    sub["alpha_j_minus"][:, 0] = 0.0
    sub = sub.astype(np.float32)
    sub.attrs = {"source": "seed study sample sphere_polecontinent108.nc, rows 18:162, columns 20:90",
                 "note": "alpha_j_minus[:, 0] set to 0 (faces leaving the window); compare columns "
                         f"{MARGIN}..{COLS.stop - COLS.start - MARGIN - 1} only (edge effects)",
                 "margin": MARGIN}
    enc = {v: {"zlib": True, "complevel": 9} for v in sub.data_vars}
    sub.to_netcdf(dst, encoding=enc)


if __name__ == "__main__":
    main(*sys.argv[1:])
