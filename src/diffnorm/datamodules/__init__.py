"""LightningDataModules of diffnorm."""

from .normalization import FieldDataset, NormalizationDataModule, PatchDataset

__all__ = ["FieldDataset", "NormalizationDataModule", "PatchDataset"]
