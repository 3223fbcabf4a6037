"""Networks for γ: the seed study's CNNs (plain, skip V1/V2) and a U-Net baseline.

All take ``(batch, channels, ny, nx)`` and return ``(batch, 1, ny, nx)``; each has ``margin`` (the context
in cells it needs around an output patch), ``body(x_padded)`` for inputs already padded by it, and
``periodic_x``/``periodic_y``/``closed`` for the geometric padding ``forward`` applies.
"""

from __future__ import annotations

from torch import nn

from .cnn import ACTIVATIONS, CNN, PADDINGS, SKIPS
from .padding import center_crop, geo_pad
from .unet import UNet

MODELS = {"cnn": CNN, "unet": UNet}


def build_model(name: str = "cnn", **kwargs) -> nn.Module:
    """``build_model("cnn", in_channels=4, skip="v2", ...)`` or ``build_model("unet", ...)``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["ACTIVATIONS", "CNN", "MODELS", "PADDINGS", "SKIPS", "UNet", "build_model", "center_crop",
           "count_parameters", "geo_pad"]
