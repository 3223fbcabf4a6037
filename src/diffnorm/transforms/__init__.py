"""Data transforms for learning: standardization and C-grid-consistent symmetry augmentation."""

from .augmentation import (
    TRANSFORMS,
    augment_and_standardize,
    augment_arrays,
    augment_cell_field,
    augment_grid,
    augment_sample,
    random_transform,
)
from .standardization import MODES, Standardizer

__all__ = [
    "MODES",
    "TRANSFORMS",
    "Standardizer",
    "augment_and_standardize",
    "augment_arrays",
    "augment_cell_field",
    "augment_grid",
    "augment_sample",
    "random_transform",
]
