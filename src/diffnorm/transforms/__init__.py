"""Data transforms for learning: standardization and C-grid-consistent symmetry augmentation."""

from .augmentation import (
    FLIPS,
    TRANSFORMS,
    TTA_CHOICES,
    TTA_SETS,
    augment_and_standardize,
    augment_arrays,
    augment_cell_field,
    augment_grid,
    augment_sample,
    random_transform,
    tta_mean,
    tta_transforms,
)
from .standardization import MODES, Standardizer

__all__ = [
    "FLIPS",
    "MODES",
    "TRANSFORMS",
    "TTA_CHOICES",
    "TTA_SETS",
    "Standardizer",
    "augment_and_standardize",
    "augment_arrays",
    "augment_cell_field",
    "augment_grid",
    "augment_sample",
    "random_transform",
    "tta_mean",
    "tta_transforms",
]
