"""Per-channel standardization fitted on the training split only (the seed study's ``partial``/``full``).

- ``partial``: mean and standard deviation over ocean cells only; after scaling, land is set to 0
  (the mean of the ocean values), so land carries no arbitrary numbers into a network.
- ``full``: mean and standard deviation over all cells (land values included as they are; they
  must be finite).

Arrays are ``(N, C, ny, nx)`` (or ``(C, ny, nx)`` for one sample) with channel names given once;
masks are ``(N, ny, nx)`` (or ``(ny, nx)``), True/1 = ocean. Statistics accumulate in float64
with Chan's parallel update, so :meth:`Standardizer.partial_fit` can stream over a data set
that does not fit in memory and gives the same result as one :meth:`fit` up to rounding.
Channels listed in ``log_channels`` (names, or indices when no names are given) are replaced by
``log10(x)`` before the statistics and the scaling (diffusivities and γ span decades); they must
be > 0 on the cells used (ocean cells for ``partial``, all cells for ``full``).
The fitted state is JSON-serializable (:meth:`to_dict`/:meth:`from_dict`) and is stored with
the data set; :meth:`inverse_transform` undoes :meth:`transform` on ocean cells (and everywhere
for ``full``) to floating-point rounding.
"""

from __future__ import annotations

import numpy as np

MODES = ("partial", "full")


class Standardizer:
    """``z = (x − mean_c) / std_c`` per channel ``c``; see the module docstring."""

    def __init__(self, mode: str = "partial", channels: list[str] | tuple[str, ...] | None = None,
                 log_channels: list | tuple = ()):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.channels = list(channels) if channels is not None else None
        self.log_channels = list(log_channels)
        if self.log_channels and self.channels is not None:
            unknown = [c for c in self.log_channels if c not in self.channels]
            if unknown:
                raise ValueError(f"log channel(s) {unknown} are not among the channels {self.channels}")
        self._count: np.ndarray | None = None
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None

    # -- shapes ------------------------------------------------------------------------
    def _batch(self, x, mask) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4:
            raise ValueError(f"expected (N, C, ny, nx) or (C, ny, nx) arrays, got shape {x.shape}")
        if self.channels is not None and x.shape[1] != len(self.channels):
            raise ValueError(f"got {x.shape[1]} channels but the standardizer has {len(self.channels)}: "
                             f"{', '.join(self.channels)}")
        if self._mean is not None and x.shape[1] != self._mean.size:
            raise ValueError(f"got {x.shape[1]} channels but the standardizer was fitted on {self._mean.size}")
        m = None
        if mask is not None:
            m = np.asarray(mask).astype(bool)
            if m.ndim == 2:
                m = m[None]
            if m.shape != (x.shape[0],) + x.shape[2:]:
                raise ValueError(f"mask has shape {np.asarray(mask).shape}, expected {(x.shape[0],) + x.shape[2:]} "
                                 f"for arrays of shape {x.shape}")
        elif self.mode == "partial":
            raise ValueError("mode 'partial' needs the ocean mask")
        return x, m

    def _log_index(self, n_channels: int) -> np.ndarray:
        if self.channels is not None:
            idx = [self.channels.index(c) for c in self.log_channels]
        else:
            idx = [int(c) for c in self.log_channels]
        if any(not 0 <= i < n_channels for i in idx):
            raise ValueError(f"log channel index out of range for {n_channels} channels: {self.log_channels}")
        return np.asarray(idx, dtype=np.int64)

    def _forward_log(self, x: np.ndarray, m: np.ndarray | None) -> np.ndarray:
        """log10 of the log channels on the cells that count (others keep a harmless 0)."""
        idx = self._log_index(x.shape[1])
        if idx.size == 0:
            return x
        x = x.copy()
        sub = x[:, idx]
        used = np.broadcast_to(m[:, None], sub.shape) if self.mode == "partial" else np.ones(sub.shape, bool)
        if np.any(~(sub[used] > 0)):
            names = [self.log_channels[k] for k in range(idx.size)]
            raise ValueError(f"log channel(s) {names} must be > 0 on every "
                             f"{'ocean ' if self.mode == 'partial' else ''}cell")
        with np.errstate(divide="ignore", invalid="ignore"):
            x[:, idx] = np.where(used, np.log10(np.where(used, sub, 1.0)), 0.0)
        return x

    def _inverse_log(self, x: np.ndarray) -> np.ndarray:
        idx = self._log_index(x.shape[1])
        if idx.size:
            x = x.copy()
            x[:, idx] = 10.0 ** x[:, idx]
        return x

    # -- fitting -------------------------------------------------------------------------
    def partial_fit(self, x, mask=None) -> Standardizer:
        """Add a batch of training samples to the statistics."""
        x, m = self._batch(x, mask)
        x = self._forward_log(x, m)
        c = x.shape[1]
        if self.mode == "partial":
            sel = np.broadcast_to(m[:, None], x.shape)
            count = np.full(c, sel[:, 0].sum(), dtype=np.float64)
            with np.errstate(invalid="ignore"):
                vals = np.where(sel, x, 0.0)
            if not np.all(np.isfinite(vals)):
                raise ValueError("non-finite values on ocean cells")
            mean = vals.sum(axis=(0, 2, 3)) / np.maximum(count, 1)
            m2 = (np.where(sel, x - mean[None, :, None, None], 0.0) ** 2).sum(axis=(0, 2, 3))
        else:
            if not np.all(np.isfinite(x)):
                raise ValueError("mode 'full' needs finite values on every cell (fill land first)")
            count = np.full(c, x[:, 0].size, dtype=np.float64)
            mean = x.mean(axis=(0, 2, 3))
            m2 = ((x - mean[None, :, None, None]) ** 2).sum(axis=(0, 2, 3))
        if self._count is None:
            self._count, self._mean, self._m2 = count, mean, m2
        else:  # Chan et al. parallel update
            n = self._count + count
            delta = mean - self._mean
            with np.errstate(invalid="ignore", divide="ignore"):
                frac = np.where(n > 0, count / n, 0.0)
            self._mean = self._mean + delta * frac
            self._m2 = self._m2 + m2 + delta**2 * self._count * frac
            self._count = n
        return self

    def fit(self, x, mask=None) -> Standardizer:
        """Fit on training arrays only (resets previous statistics)."""
        self._count = self._mean = self._m2 = None
        return self.partial_fit(x, mask)

    @property
    def fitted(self) -> bool:
        return self._mean is not None

    @property
    def mean(self) -> np.ndarray:
        self._check()
        return self._mean.copy()

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation per channel; 1 for a constant channel (no division by 0)."""
        self._check()
        std = np.sqrt(self._m2 / np.maximum(self._count, 1))
        return np.where(std > 0, std, 1.0)

    def _check(self) -> None:
        if self._mean is None:
            raise RuntimeError("the standardizer is not fitted; call fit() on the training split first")

    # -- applying ------------------------------------------------------------------------
    def transform(self, x, mask=None) -> np.ndarray:
        """Standardize; ``partial`` sets land to 0. Returns the input's rank (3-D in, 3-D out)."""
        self._check()
        single = np.ndim(x) == 3
        x, m = self._batch(x, mask)
        x = self._forward_log(x, m)
        z = (x - self._mean[None, :, None, None]) / self.std[None, :, None, None]
        if self.mode == "partial":
            z = np.where(m[:, None], z, 0.0)
        return z[0] if single else z

    def inverse_transform(self, z, mask=None, land_value: float = 0.0) -> np.ndarray:
        """Undo :meth:`transform`; for ``partial`` land (lost by the transform) becomes ``land_value``."""
        self._check()
        single = np.ndim(z) == 3
        z, m = self._batch(z, mask)
        x = self._inverse_log(z * self.std[None, :, None, None] + self._mean[None, :, None, None])
        if self.mode == "partial":
            x = np.where(m[:, None], x, land_value)
        return x[0] if single else x

    # -- (de)serialization -------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-serializable state (floats are written with full precision by ``json``)."""
        self._check()
        return {"mode": self.mode, "channels": self.channels, "log_channels": self.log_channels,
                "count": self._count.tolist(),
                "mean": self._mean.tolist(), "m2": self._m2.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, state: dict) -> Standardizer:
        missing = [k for k in ("mode", "count", "mean", "m2") if k not in state]
        if missing:
            raise ValueError(f"standardizer state is missing key(s): {', '.join(missing)}")
        out = cls(state["mode"], state.get("channels"), state.get("log_channels", ()))
        out._count = np.asarray(state["count"], dtype=np.float64)
        out._mean = np.asarray(state["mean"], dtype=np.float64)
        out._m2 = np.asarray(state["m2"], dtype=np.float64)
        if not (out._count.shape == out._mean.shape == out._m2.shape) or out._mean.ndim != 1:
            raise ValueError("standardizer state: count, mean and m2 must be lists of equal length")
        return out

    def __repr__(self) -> str:
        state = f"mean={self._mean}, std={self.std}" if self.fitted else "unfitted"
        return f"Standardizer(mode={self.mode!r}, channels={self.channels}, {state})"
