"""Shared fixtures: small grids with coasts, islands, bays and periodic axes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffnorm.grid import Grid
from diffnorm.operator import stiffness_matrix


def make_grid(ny=14, nx=18, periodic_x=False, periodic_y=False, seed=0, land=0.15, scale=1.0) -> Grid:
    """Random areas/diffusivities, a random coast, an island and a one-cell bay."""
    rng = np.random.default_rng(seed)
    mask = rng.random((ny, nx)) > land
    mask[ny // 2 - 1: ny // 2 + 1, nx // 2 - 1: nx // 2 + 1] = False  # island
    mask[0, :] = False  # coast along the south
    mask[1, 2] = True  # one-cell bay opening north
    mask[1, 1] = mask[1, 3] = False
    area = rng.uniform(0.5, 2.0, (ny, nx))
    diff_x = scale * rng.uniform(0.1, 1.5, (ny, nx))
    diff_y = scale * rng.uniform(0.1, 1.5, (ny, nx))
    return Grid(mask, area, diff_x, diff_y, periodic_x, periodic_y)


def dense_gamma(grid: Grid, steps: int) -> np.ndarray:
    """Textbook γ from dense matrices: diag(L^{1/2} W⁻¹ L^{T/2})^{-1/2} (SPEC §2)."""
    K = stiffness_matrix(grid).toarray()
    W = np.diag(grid.area[grid.mask])
    L1 = np.linalg.solve(W + K, W)
    Lh = np.linalg.matrix_power(L1, steps // 2)
    V = Lh @ np.linalg.inv(W) @ Lh.T
    return grid.to_field(1.0 / np.sqrt(np.diag(V)))


def make_tiny_dataset(root, seed: int = 0, splits: dict | None = None):
    """A data set of 12 x 16 fields of real coast (lat 30-42, lon -80..-64 at 1°), isotropic ℓ 1-3 cells, M = 4."""
    from diffnorm.generation import DatasetConfig, generate_dataset

    cfg = DatasetConfig(family="coast", family_params={"lat_range": [30, 42], "lon_range": [-80, -64], "res": 1.0},
                        generator="isotropic", generator_params={"min_length": 1.0, "max_length": 3.0}, steps=4,
                        seed=seed, splits=splits or {"train": 3, "val": 1, "test": 1})
    generate_dataset(root, cfg, scheduler="synchronous", progress=False)
    return root


def make_tiny_global_dataset(root, seed: int = 0, splits: dict | None = None):
    """A data set of 18 x 36 global fields (sphere at 10°, periodic in x, real coasts), ℓ 1-3 cells, M = 4."""
    from diffnorm.generation import DatasetConfig, generate_dataset

    cfg = DatasetConfig(family="sphere", family_params={"res": 10.0}, generator="isotropic",
                        generator_params={"min_length": 1.0, "max_length": 3.0}, steps=4, seed=seed,
                        splits=splits or {"train": 2, "val": 1})
    generate_dataset(root, cfg, scheduler="synchronous", progress=False)
    return root


# the data-module settings of the packed-field tests (test_packed.py, test_fresh_fields.py): 8 x 8 patches
PACKED_DATA = {"channels": ["mask", "distance", "sf_diff_x", "sf_diff_y", "area_ratio_y", "analytic_sf"],
               "target": "log_ratio_images", "patch_size": 8, "samples_per_epoch": 8, "batch_size": 4,
               "augment": True, "exact_small": 10}

PERIODIC_CASES = [(False, False), (True, False), (False, True), (True, True)]


@pytest.fixture(params=PERIODIC_CASES, ids=lambda p: f"px{int(p[0])}py{int(p[1])}")
def small_grid(request) -> Grid:
    px, py = request.param
    return make_grid(periodic_x=px, periodic_y=py, seed=int(px) + 2 * int(py))


class TinyNet(torch.nn.Module):
    """Two 3×3 convolutions ('same' padding): a stand-in network for prediction and evaluation tests."""

    def __init__(self, channels: int, activation: str = "relu"):
        super().__init__()
        self.a = torch.nn.Conv2d(channels, 6, 3, padding=1)
        self.b = torch.nn.Conv2d(6, 1, 3, padding=1)
        self.act = getattr(torch, activation)

    def forward(self, x):
        return self.b(self.act(self.a(x)))
