"""PyTorch data sets over the directories written by :mod:`diffnorm.generation`."""

from .normalization import NormalizationDataset

__all__ = ["NormalizationDataset"]
