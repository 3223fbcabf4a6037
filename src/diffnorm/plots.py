"""Figures people look at: maps of γ and ε, error against distance to the coast, learning curves.

Everything renders with matplotlib's Agg backend (no display needed) and returns the PNG path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

LAND_COLOUR = "#d9d9d9"


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def _extent(lat: np.ndarray | None, lon: np.ndarray | None):
    if lat is None or lon is None:
        return None, ("i (x)", "j (y)")
    return [float(np.nanmin(lon)), float(np.nanmax(lon)), float(np.nanmin(lat)), float(np.nanmax(lat))], \
        ("longitude", "latitude")


def plot_field(values: np.ndarray, path: str | os.PathLike, title: str = "", label: str = "",
               lat: np.ndarray | None = None, lon: np.ndarray | None = None, log: bool = False,
               cmap: str = "viridis", symmetric: bool = False, vmin: float | None = None,
               vmax: float | None = None) -> Path:
    """Map of a (ny, nx) field, NaN (land) in grey, south at the bottom."""
    from matplotlib.colors import LogNorm, Normalize, SymLogNorm

    plt = _plt()
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    ny, nx = values.shape
    fig, ax = plt.subplots(figsize=(min(12, 3 + 7 * nx / max(ny, nx)), min(8, 2 + 5 * ny / max(ny, nx))))
    ax.set_facecolor(LAND_COLOUR)
    norm = None
    if finite.size:
        lo = float(finite.min()) if vmin is None else vmin
        hi = float(finite.max()) if vmax is None else vmax
        if symmetric:
            m = max(abs(lo), abs(hi)) or 1.0
            pos = np.abs(finite[finite != 0])
            lin = float(np.quantile(pos, 0.05)) if pos.size else m / 100
            norm = SymLogNorm(linthresh=max(lin, m * 1e-6), vmin=-m, vmax=m) if log else Normalize(-m, m)
        elif log:
            pos = finite[finite > 0]
            lo = float(pos.min()) if pos.size else 1e-16
            norm = LogNorm(vmin=max(lo, hi * 1e-8), vmax=max(hi, lo * 10))
        else:
            norm = Normalize(lo, hi if hi > lo else lo + 1)
    extent, (xl, yl) = _extent(lat, lon)
    if norm is not None:
        norm.clip = False
    im = ax.imshow(np.ma.masked_invalid(values), origin="lower", cmap=cmap, norm=norm, extent=extent,
                   aspect="auto", interpolation="nearest")
    fig.colorbar(im, ax=ax, label=label, shrink=0.85)
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_gamma(gamma: np.ndarray, path: str | os.PathLike, title: str = "normalization coefficients γ",
               **kwargs) -> Path:
    return plot_field(gamma, path, title=title, label="γ", **kwargs)


def plot_error_map(estimate: np.ndarray, reference: np.ndarray, mask: np.ndarray | None, path: str | os.PathLike,
                   title: str = "relative error ε = (γ̂² − γ²)/γ²", absolute: bool = False, **kwargs) -> Path:
    """Map of ε (or |ε| on a log scale with ``absolute``) on ocean cells."""
    est = np.asarray(estimate, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    ocean = np.isfinite(ref) if mask is None else np.asarray(mask, bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        eps = np.where(ocean, (est**2 - ref**2) / ref**2, np.nan)
    if absolute:
        return plot_field(np.abs(eps), path, title=title, label="|ε|", log=True, cmap="magma", **kwargs)
    finite = np.abs(eps[np.isfinite(eps)])
    if finite.size and "vmax" not in kwargs:  # a few coastal outliers must not wash out the map
        m = float(np.quantile(finite, 0.99)) or float(finite.max()) or 1.0
        kwargs = {**kwargs, "vmin": -m, "vmax": m}
        title = f"{title} (colours clipped at the 99th percentile of |ε|, max {finite.max():.2g})"
    return plot_field(eps, path, title=title, label="ε", symmetric=True, cmap="RdBu_r", **kwargs)


def plot_error_vs_distance(by_distance, path: str | os.PathLike, title: str = "mean |ε| by distance to the coast",
                           max_distance: int | None = 30) -> Path:
    """Study fig. 5: mean (and max) |ε| against distance to the coast in cells."""
    plt = _plt()
    df = by_distance if max_distance is None else by_distance[by_distance["distance"] <= max_distance]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.semilogy(df["distance"], df["mean_abs_eps"], "o-", label="mean |ε|")
    if "max_abs_eps" in df:
        ax.semilogy(df["distance"], df["max_abs_eps"], "s--", alpha=0.6, label="max |ε|")
    ax.set_xlabel("distance to the coast (cells)")
    ax.set_ylabel("|ε|")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_cells_by_distance(by_distance, path: str | os.PathLike,
                           title: str = "ocean cells by distance to the coast", max_distance: int | None = 30) -> Path:
    """Study fig. 6: distribution of the ocean cells by distance to the coast."""
    plt = _plt()
    df = by_distance if max_distance is None else by_distance[by_distance["distance"] <= max_distance]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.bar(df["distance"], 100 * df["fraction"], color="tab:blue")
    ax.set_xlabel("distance to the coast (cells)")
    ax.set_ylabel("% of ocean cells")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def read_lightning_csv(path: str | os.PathLike):
    """A Lightning CSVLogger ``metrics.csv`` (or a version directory holding one) as a DataFrame."""
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        found = sorted(path.rglob("metrics.csv"))
        if not found:
            raise FileNotFoundError(f"no metrics.csv under {path}")
        path = found[-1]
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    df = pd.read_csv(path)
    if df.empty:
        raise ValueError(f"{path} holds no logged values")
    return df


def _is_numeric(column) -> bool:
    """Whether a data frame column holds numbers (pandas' own test: its string dtypes are not NumPy's)."""
    from pandas.api.types import is_numeric_dtype

    return bool(is_numeric_dtype(column))


def join_stages(logs: Sequence[pd.DataFrame]) -> tuple[pd.DataFrame, list[int]]:
    """Logs of consecutive training stages (warm restarts) end to end: ``step`` and ``epoch`` continue.

    Each stage's Lightning log counts from 0; stage k is shifted by the last step (epoch) of the
    stages before it plus one. Returns the joined log and the first step of every stage after the first.
    """
    import pandas as pd

    if not logs:
        raise ValueError("no log to join")
    shifted, starts, offset = [], [], {"step": 0, "epoch": 0}
    for k, df in enumerate(logs):
        df = df.copy()
        for col in offset:
            if col in df:
                df[col] = df[col] + offset[col]
        if k:
            starts.append(int(offset["step"]))
        for col in offset:
            if col in df and df[col].notna().any():
                offset[col] = int(df[col].max()) + 1
        shifted.append(df)
    return pd.concat(shifted, ignore_index=True), starts


def plot_learning_curves(metrics_csv: str | os.PathLike | Sequence[str | os.PathLike], path: str | os.PathLike,
                         keys: Sequence[str] | None = None, x: str | None = None,
                         title: str = "learning curves", reference: dict[str, float] | None = None,
                         runs: Sequence[str] | None = None) -> Path:
    """Every logged metric (or ``keys``) against ``step`` (or ``epoch``), on a log scale when positive.

    Lightning's CSV logger writes one row per logging call with blanks elsewhere: each curve keeps
    only its own non-empty rows. Several logs are consecutive stages (warm restarts) joined end to
    end (:func:`join_stages`; dotted lines mark the restarts), unless ``runs`` names them: then they are
    separate runs drawn over each other from step 0, one colour a run and one line style a metric.
    ``reference`` draws horizontal lines in the metrics panel, e.g. ``{"randomized N=1e4 ε_max": 0.059}``.
    """
    plt = _plt()
    paths = [metrics_csv] if isinstance(metrics_csv, (str, os.PathLike)) else list(metrics_csv)
    logs = [read_lightning_csv(p) for p in paths]
    if runs is None:
        df, starts = join_stages(logs)
    else:
        if len(runs) != len(paths):
            raise ValueError(f"{len(runs)} run name(s) for {len(paths)} log(s): give one name a log")
        if len(set(runs)) != len(runs):
            raise ValueError(f"run names must differ: {list(runs)}")
        import pandas as pd

        df, starts = pd.concat([d.assign(run=r) for d, r in zip(logs, runs, strict=True)], ignore_index=True), []
    x = x or ("step" if "step" in df else "epoch" if "epoch" in df else None)
    if x is None:
        raise ValueError("metrics.csv has neither a 'step' nor an 'epoch' column")
    columns = [c for c in df.columns if c not in ("step", "epoch", "run") and _is_numeric(df[c])]
    if keys:
        missing = [k for k in keys if k not in df.columns]
        if missing:
            raise ValueError(f"no column(s) {', '.join(missing)} in the log; it has: {', '.join(columns)}")
        columns = list(keys)
    if not columns:
        raise ValueError("the log holds no metric column")
    groups = {}
    for c in columns:  # losses in one panel, SPEC §3 errors in another
        groups.setdefault("loss" if "loss" in c else "metrics", []).append(c)
    if reference and "metrics" not in groups:
        groups["metrics"] = []
    fig, axes = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 4), squeeze=False)
    styles = ["-", "--", "-.", (0, (5, 1, 1, 1, 1, 1))]
    for ax, (name, cols) in zip(axes[0], groups.items(), strict=True):
        positive = True
        for j, c in enumerate(cols):
            for r, run in enumerate(runs or [None]):
                d = (df if run is None else df[df["run"] == run])[[x, c]].dropna()
                if d.empty:
                    continue
                positive &= bool((d[c] > 0).all())
                noisy = c.endswith("_step")  # per-step values: faint, behind the epoch and validation curves
                style = dict(color=f"C{j}", ls="-") if run is None else dict(color=f"C{r}", ls=styles[j % len(styles)])
                ax.plot(d[x], d[c], marker="." if len(d) < 50 else None, label=c if run is None else f"{run}: {c}",
                        alpha=0.35 if noisy else 1.0, lw=0.8 if noisy else 1.5, zorder=1 if noisy else 2, **style)
        if name == "metrics":
            used = len(runs) if runs else len(cols)
            for k, (label, value) in enumerate((reference or {}).items()):
                ax.axhline(value, color=f"C{used + k}", ls=":", label=label)
                positive &= value > 0
        if x == "step":
            for s in starts:
                ax.axvline(s, color="grey", ls=":", lw=0.8)
        if positive:
            ax.set_yscale("log")
        ax.set_xlabel(x)
        ax.set_title(f"{title}: {name}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)
