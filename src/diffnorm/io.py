"""Normalization output files (SPEC §4): variable ``gamma(y, x)``, NaN on land."""

from __future__ import annotations

import os

import numpy as np
import xarray as xr

from .grid import Grid, GridError, open_dataset_checked, write_netcdf_atomic


def gamma_dataset(grid: Grid, gamma: np.ndarray, **attrs) -> xr.Dataset:
    gamma = np.where(grid.mask, gamma, np.nan).astype(np.float64)
    ds = xr.Dataset({"gamma": (("y", "x"), gamma)})
    if grid.lat is not None:
        ds = ds.assign_coords(lat=(("y", "x"), grid.lat))
    if grid.lon is not None:
        ds = ds.assign_coords(lon=(("y", "x"), grid.lon))
    ds["gamma"].attrs.update({k: v for k, v in attrs.items() if v is not None})
    ds.attrs.update({k: v for k, v in attrs.items() if v is not None})
    return ds


def write_gamma(path: str | os.PathLike, grid: Grid, gamma: np.ndarray, **attrs) -> None:
    """Write γ atomically: an error midway leaves no output file."""
    write_netcdf_atomic(gamma_dataset(grid, gamma, **attrs), path)


def read_gamma(path: str | os.PathLike) -> np.ndarray:
    with open_dataset_checked(path) as ds:
        if "gamma" not in ds.variables:
            raise GridError(f"{path} has no variable 'gamma'")
        return ds["gamma"].values.astype(np.float64)


def read_gamma_pair(estimate: str | os.PathLike, reference: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """γ of an estimate and of its reference, which must be on the same grid."""
    est, ref = read_gamma(estimate), read_gamma(reference)
    if est.shape != ref.shape:
        raise GridError(f"gamma shapes differ: estimate {est.shape}, reference {ref.shape}")
    return est, ref
