"""The seed study's CNNs: plain, skip connections V1 (concatenation) and V2 (residual).

Layout (3×3 convolutions with bias, ``filters`` channels, batch norm + activation on every layer but the last):
one input layer ``C → filters``, ``blocks`` blocks of ``layers_per_block`` layers, one output layer
``filters → out_channels``.

- ``skip="none"``: the layers in sequence.
- ``skip="v1"`` (study fig. 4, done as described): the input layer's output ``h₀`` is concatenated with the
  network input ``x``; block ``k`` maps its input ``a_k`` to ``s_k`` (``filters`` channels) and the next block
  gets ``a_{k+1} = [s_{k-1}, s_k]`` — the block's output concatenated with its own features' input
  ``s_{k-1}`` (``h₀`` for the first block). With 4 inputs and 64 filters the blocks take 68, then 128 channels
  and the output layer takes the last block's 64: 412 417 parameters for 4 blocks of 2 layers. (The study's
  code concatenated ``s_k`` with itself from block 2 on.)
- ``skip="v2"`` (study figs. 8-9): residual blocks ``h ← act(h + BN(conv(act(BN(conv(h))))))``;
  299 521 parameters in the same configuration.

``padding="valid"``: no padding inside the network; :meth:`CNN.forward` first pads the input by the receptive
field ``margin`` with :func:`~diffnorm.models.padding.geo_pad` (circular along periodic axes, land or
replicate along closed ones), so the output has the input's shape and the domain edges are treated like the
ocean geometry says. ``padding="same"``: zero padding in every convolution (the study's). ``dilations``
(one per layer, input layer first, output layer excluded) widen the receptive field at no parameter cost.
:meth:`CNN.body` runs the network on an input already padded by ``margin`` (training on patches with context).
"""

from __future__ import annotations

import torch
from torch import nn

from .padding import center_crop, geo_pad

ACTIVATIONS = ("relu", "prelu", "leakyrelu", "elu", "softplus")
SKIPS = ("none", "v1", "v2")
PADDINGS = ("valid", "same")


def make_activation(name: str) -> nn.Module:
    name = name.lower()
    if name == "relu":
        return nn.ReLU()
    if name == "prelu":
        return nn.PReLU()
    if name == "leakyrelu":
        return nn.LeakyReLU(0.01)
    if name == "elu":
        return nn.ELU()
    if name == "softplus":
        return nn.Softplus()
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


class ConvLayer(nn.Module):
    """3×3 convolution (bias) + optional batch norm + optional activation."""

    def __init__(self, cin: int, cout: int, dilation: int = 1, padding: str = "valid", batchnorm: bool = True,
                 activation: str | None = "relu"):
        super().__init__()
        pad = dilation if padding == "same" else 0
        self.conv = nn.Conv2d(cin, cout, 3, padding=pad, dilation=dilation, bias=True)
        self.bn = nn.BatchNorm2d(cout) if batchnorm else nn.Identity()
        self.act = make_activation(activation) if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Block(nn.Module):
    """``layers`` ConvLayers; with ``residual`` the last one has no activation (it comes after the sum)."""

    def __init__(self, cin: int, filters: int, layers: int, dilations: list[int], padding: str, batchnorm: bool,
                 activation: str, residual: bool):
        super().__init__()
        mods = []
        for k in range(layers):
            last = residual and k == layers - 1
            mods.append(ConvLayer(cin if k == 0 else filters, filters, dilations[k], padding, batchnorm,
                                  None if last else activation))
        self.layers = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class CNN(nn.Module):
    """Plain / V1 / V2 CNN of the study; see the module docstring."""

    def __init__(self, in_channels: int = 4, out_channels: int = 1, filters: int = 64, blocks: int = 4,
                 layers_per_block: int = 2, skip: str = "none", activation: str = "relu", padding: str = "valid",
                 batchnorm: bool = True, dilations: list[int] | None = None, periodic_x: bool = False,
                 periodic_y: bool = False, closed: str = "land"):
        super().__init__()
        if skip not in SKIPS:
            raise ValueError(f"unknown skip {skip!r}; choose one of {', '.join(SKIPS)}")
        if padding not in PADDINGS:
            raise ValueError(f"unknown padding {padding!r}; choose one of {', '.join(PADDINGS)}")
        n_hidden = 1 + blocks * layers_per_block
        dil = [1] * n_hidden if dilations is None else [int(d) for d in dilations]
        if len(dil) != n_hidden:
            raise ValueError(f"dilations needs {n_hidden} entries (input layer + {blocks}x{layers_per_block} block "
                             f"layers), got {len(dil)}")
        self.skip = skip
        self.padding = padding
        self.periodic_x = bool(periodic_x)
        self.periodic_y = bool(periodic_y)
        self.closed = closed
        self.dilations = dil  # hidden layers', input layer first (the output layer's is 1)
        self.margin = int(sum(dil) + 1) if padding == "valid" else 0
        self.input_layer = ConvLayer(in_channels, filters, dil[0], padding, batchnorm, activation)
        blks = []
        for b in range(blocks):
            cin = filters
            if skip == "v1":
                cin = filters + in_channels if b == 0 else 2 * filters
            d = dil[1 + b * layers_per_block: 1 + (b + 1) * layers_per_block]
            blks.append(Block(cin, filters, layers_per_block, d, padding, batchnorm, activation, skip == "v2"))
        self.blocks = nn.ModuleList(blks)
        self.post = make_activation(activation) if skip == "v2" else nn.Identity()
        self.output_layer = ConvLayer(filters, out_channels, 1, padding, False, None)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """The network on an input padded by ``margin`` (valid) or unpadded (same)."""
        h = self.input_layer(x)
        if self.skip == "v1":
            a = torch.cat([center_crop(x, h.shape[2], h.shape[3]), h], dim=1)
            prev = h
            s = h
            for blk in self.blocks:
                s = blk(a)
                a = torch.cat([center_crop(prev, s.shape[2], s.shape[3]), s], dim=1)
                prev = s
            h = s
        elif self.skip == "v2":
            for blk in self.blocks:
                r = blk(h)
                h = self.post(center_crop(h, r.shape[2], r.shape[3]) + r)
        else:
            for blk in self.blocks:
                h = blk(h)
        if not torch.jit.is_scripting():  # (TorchScript skips this block: it knows no autocast query by device)
            if torch.is_autocast_enabled(h.device.type):
                return self._output_float32(h)
        return self.output_layer(h)

    @torch.jit.unused
    def _output_float32(self, h: torch.Tensor) -> torch.Tensor:
        """The output layer's value in float32 under autocast (bf16 mixed precision): bf16's 3 significant digits
        would round a standardized target of 6 (a coastal cell) by 0.016, i.e. 2e-3 in ε.

        With gradients on (training), the gradient flows through the layer in bf16 instead —
        ``y16 + (y32 − y16).detach()``: the float32 value, the bf16 layer's gradient. A float32 backward pass
        of this one layer took a fifth of a 32-filter training step on the CPU (73 against 59 ms a step; 62 ms
        this way)."""
        if not torch.is_grad_enabled():
            with torch.autocast(h.device.type, enabled=False):
                return self.output_layer(h.float())
        y16 = self.output_layer(h).float()
        with torch.no_grad(), torch.autocast(h.device.type, enabled=False):
            y32 = self.output_layer(h.float())
        return y16 + (y32 - y16).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, ny, nx) → (B, out, ny, nx)``; pads by the receptive field first (valid padding)."""
        if self.margin > 0:
            x = geo_pad(x, self.margin, self.periodic_x, self.periodic_y, self.closed)
        return self.body(x)


def grow_state_dict(source: dict[str, torch.Tensor], target: nn.Module) -> dict[str, torch.Tensor]:
    """The weights of a trained :class:`CNN` (``source``, a state dict) put into a wider and/or deeper copy of it
    (``target``: the same CNN with more ``filters`` and/or more ``blocks`` appended after the trained ones), so
    that the bigger network computes exactly the same function.

    Why: capacity can then be added to a trained network without starting over (Net2Net-style growing).

    - Wider: each convolution keeps its trained block ``[:out, :in]``; the weights from the new channels into
      the old ones are zero (the old channels, hence the output, are unchanged), and the new channels' own
      weights keep ``target``'s random initialization, so they compute non-zero features from the start and the
      zero weights that read them get gradients.
    - Deeper (``skip="v2"`` with ReLU only): each new residual block keeps ``target``'s random initialization except its
      last convolution, which is zero — the block adds nothing, and ``relu(h + 0) = h`` because ``h`` already
      left a ReLU, so the block starts as the identity while its last layer gets gradients at once (the
      zero-initialized residual branch of Fixup / "zero-γ"). With ``padding="valid"`` the new blocks' dilations
      only widen the margin the input is padded by.

    Only for ``skip`` ``"none"``/``"v2"`` without batch norm: a V1 block's concatenated input would interleave
    old and new channels, and batch norm's statistics of new channels would need their own treatment.
    """
    batchnorm = any(isinstance(m, nn.BatchNorm2d) for m in target.modules())
    if not isinstance(target, CNN) or target.skip == "v1" or batchnorm:
        raise ValueError("growing needs a CNN with skip 'none' or 'v2' and no batch norm")
    old_blocks = 1 + max((int(k.split(".")[1]) for k in source if k.startswith("blocks.")), default=-1)
    if len(target.blocks) < old_blocks:
        raise ValueError(f"growing: the trained network has {old_blocks} blocks, more than {len(target.blocks)}")
    if len(target.blocks) > old_blocks and (target.skip != "v2" or not isinstance(target.post, nn.ReLU)):
        raise ValueError("growing deeper needs skip 'v2' and ReLU (then a new residual block starts as the "
                         "identity: relu(h + 0) = h for h >= 0)")
    out = {}
    for name, new in target.state_dict().items():
        if name in source:
            out[name] = _fit_weight(name, source[name].to(new.dtype), new)
        elif name.startswith("blocks.") and int(name.split(".")[1]) >= old_blocks:
            out[name] = new.detach().clone()
        else:
            raise ValueError(f"growing: the trained network has no {name!r} (another architecture)")
    for b in range(old_blocks, len(target.blocks)):  # each new block's last convolution: zero, the identity
        last = len(target.blocks[b].layers) - 1
        for key in target.blocks[b].layers[last].state_dict():
            out[f"blocks.{b}.layers.{last}.{key}"].zero_()
    return out


def _fit_weight(name: str, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """``old`` in the top-left corner of ``new``'s shape; new outputs keep ``new``, new inputs of old outputs are 0."""
    if old.shape == new.shape:
        return old.clone()
    if old.dim() != new.dim() or old.shape[2:] != new.shape[2:] or any(
            o > n for o, n in zip(old.shape, new.shape, strict=True)):
        raise ValueError(f"growing: {name} of shape {tuple(old.shape)} does not fit into {tuple(new.shape)}")
    w = new.detach().clone()
    if w.dim() >= 2:
        w[: old.shape[0], old.shape[1]:] = 0.0  # new channels do not feed old ones
        w[: old.shape[0], : old.shape[1]] = old
    else:
        w[: old.shape[0]] = old
    return w
