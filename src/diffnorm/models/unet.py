"""U-Net baseline (~10⁶ parameters with the defaults), the study's reference architecture.

``same`` padding inside; :meth:`UNet.forward` pads the input by ``margin`` cells of geometric context
(:func:`~diffnorm.models.padding.geo_pad`) and then with land up to a multiple of ``2**depth``, and crops
the output back, so any ``ny × nx`` works.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cnn import ConvLayer
from .padding import geo_pad


class DoubleConv(nn.Module):
    def __init__(self, cin: int, cout: int, activation: str, batchnorm: bool):
        super().__init__()
        self.a = ConvLayer(cin, cout, 1, "same", batchnorm, activation)
        self.b = ConvLayer(cout, cout, 1, "same", batchnorm, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


class UNet(nn.Module):
    def __init__(self, in_channels: int = 4, out_channels: int = 1, filters: int = 24, depth: int = 3,
                 activation: str = "relu", batchnorm: bool = True, margin: int = 8, periodic_x: bool = False,
                 periodic_y: bool = False, closed: str = "land"):
        super().__init__()
        self.depth = int(depth)
        self.margin = int(margin)
        self.periodic_x = bool(periodic_x)
        self.periodic_y = bool(periodic_y)
        self.closed = closed
        chans = [filters * 2**k for k in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = in_channels
        for c in chans[:-1]:
            self.down.append(DoubleConv(cin, c, activation, batchnorm))
            cin = c
        self.bottom = DoubleConv(chans[-2], chans[-1], activation, batchnorm)
        self.ups = nn.ModuleList()
        self.up_convs = nn.ModuleList()
        for k in range(depth, 0, -1):
            self.ups.append(nn.ConvTranspose2d(chans[k], chans[k - 1], 2, stride=2))
            self.up_convs.append(DoubleConv(2 * chans[k - 1], chans[k - 1], activation, batchnorm))
        self.head = nn.Conv2d(chans[0], out_channels, 1)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """Input padded by ``margin``; returns the central ``(H − 2·margin) × (W − 2·margin)``."""
        h0, w0 = x.shape[2], x.shape[3]
        mult = 1 << self.depth
        ph = (mult - h0 % mult) % mult
        pw = (mult - w0 % mult) % mult
        x = F.pad(x, [0, pw, 0, ph])
        skips: list[torch.Tensor] = []
        for d in self.down:
            x = d(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        k = len(skips) - 1
        for up, conv in zip(self.ups, self.up_convs, strict=True):
            x = up(x)
            x = conv(torch.cat([skips[k], x], dim=1))
            k -= 1
        x = self.head(x)
        m = self.margin
        return x[:, :, m:h0 - m, m:w0 - m]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.margin > 0:
            x = geo_pad(x, self.margin, self.periodic_x, self.periodic_y, self.closed)
        return self.body(x)
