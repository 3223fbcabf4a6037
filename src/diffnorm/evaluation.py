"""The study's tables and figures on a data set split: per-field metrics, error vs coast distance,
mean |ε| maps, a Markdown report, and the comparison of methods (CNN, randomized, analytic, exact).

All errors follow SPEC §3 against the exact labels stored in the data set.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .grid import Grid
from .metrics import METRIC_NAMES, aggregate_metrics, relative_error, sample_metrics

Estimator = Callable[[Grid, int, int], np.ndarray]  # (grid, steps, sample index) -> γ


# -- data set access ------------------------------------------------------------------------
def item_grid(item: dict) -> Grid:
    """A :class:`Grid` from a :class:`~diffnorm.datasets.NormalizationDataset` item."""
    return Grid(item["mask"] > 0.5, item["area"], item["diff_x"], item["diff_y"],
                bool(item.get("periodic_x", False)), bool(item.get("periodic_y", False)),
                item.get("lat"), item.get("lon"), {"steps": int(item["steps"])} if "steps" in item else {})


# -- per-field metrics -------------------------------------------------------------------
def coast_distance(grid: Grid, metric: str = "manhattan") -> np.ndarray:
    """Distance (cells) of every ocean cell to the nearest land or wall; 0 on land."""
    from .features import grid_signed_distance

    return np.where(grid.mask, grid_signed_distance(grid, metric), 0.0)


@dataclass
class Evaluation:
    """Everything ``diffnorm evaluate`` reports."""

    per_field: pd.DataFrame          # one row per field: file, rmse, q9999, max, mean, time_s
    summary: dict[str, float]        # aggregate_metrics (+ time_s)
    by_distance: pd.DataFrame        # distance, cells, fraction, mean_abs_eps, max_abs_eps
    mean_abs_map: np.ndarray         # (ny, nx) mean |ε| over the fields where the cell is ocean
    mask_any: np.ndarray             # (ny, nx) ocean in at least one field
    example: tuple | None = None     # (grid, γ reference, γ estimate) of the first field


class Accumulator:
    """Streaming version of :func:`evaluate_estimates`: ``add`` one field at a time (nothing but the
    running sums and the first field is kept), ``result()`` at the end."""

    def __init__(self, distance_metric: str = "manhattan"):
        self.distance_metric = distance_metric
        self.rows: list[dict] = []
        self.times: list[float] = []
        self.shape: tuple | None = None
        self.same_shape = True
        self.sum_map: np.ndarray | None = None
        self.cnt_map: np.ndarray | None = None
        self.dist_sum: dict[int, float] = {}
        self.dist_max: dict[int, float] = {}
        self.dist_cnt: dict[int, int] = {}
        self.example: tuple | None = None
        self._distance_cache: tuple | None = None

    def _distance(self, grid: Grid) -> np.ndarray:
        key = (grid.shape, grid.periodic_x, grid.periodic_y, grid.mask.tobytes())
        if self._distance_cache is None or self._distance_cache[0] != key:
            d = np.rint(coast_distance(grid, self.distance_metric)[grid.mask]).astype(int)
            self._distance_cache = (key, d)
        return self._distance_cache[1]

    def add(self, grid: Grid, reference: np.ndarray, estimate: np.ndarray, file: str | None = None,
            time_s: float | None = None) -> dict:
        m = sample_metrics(estimate, reference, grid.mask)
        row = {"file": file if file is not None else f"field_{len(self.rows)}", **m}
        if time_s is not None:
            row["time_s"] = float(time_s)
            self.times.append(float(time_s))
        self.rows.append(row)
        eps = np.abs(relative_error(estimate, reference, grid.mask))
        if self.shape is None:
            self.shape = grid.shape
            self.sum_map, self.cnt_map = np.zeros(grid.shape), np.zeros(grid.shape)
            self.example = (grid, np.asarray(reference), np.asarray(estimate))
        if grid.shape != self.shape:
            self.same_shape = False
        if self.same_shape:
            self.sum_map[grid.mask] += eps
            self.cnt_map[grid.mask] += 1
        d = self._distance(grid)
        sums = np.bincount(d, weights=eps)
        counts = np.bincount(d)
        maxes = np.zeros(counts.size)
        np.maximum.at(maxes, d, eps)
        for dist in np.nonzero(counts)[0]:
            dist = int(dist)
            self.dist_sum[dist] = self.dist_sum.get(dist, 0.0) + float(sums[dist])
            self.dist_cnt[dist] = self.dist_cnt.get(dist, 0) + int(counts[dist])
            self.dist_max[dist] = max(self.dist_max.get(dist, 0.0), float(maxes[dist]))
        return row

    def result(self) -> Evaluation:
        if not self.rows:
            raise ValueError("no field was evaluated")
        summary = aggregate_metrics(self.rows)
        if self.times and len(self.times) == len(self.rows):
            summary["time_s"] = float(np.mean(self.times))
            summary["time_s_std"] = float(np.std(self.times))
        total = sum(self.dist_cnt.values())
        dists = sorted(self.dist_cnt)
        by_distance = pd.DataFrame({
            "distance": dists,
            "cells": [self.dist_cnt[d] for d in dists],
            "fraction": [self.dist_cnt[d] / total for d in dists],
            "mean_abs_eps": [self.dist_sum[d] / self.dist_cnt[d] for d in dists],
            "max_abs_eps": [self.dist_max[d] for d in dists],
        })
        if self.same_shape:
            with np.errstate(invalid="ignore", divide="ignore"):
                mean_map = np.where(self.cnt_map > 0, self.sum_map / np.maximum(self.cnt_map, 1), np.nan)
            mask_any = self.cnt_map > 0
        else:
            mean_map, mask_any = np.full((1, 1), np.nan), np.zeros((1, 1), bool)
        return Evaluation(pd.DataFrame(self.rows), summary, by_distance, mean_map, mask_any, self.example)


def evaluate_estimates(grids: Sequence[Grid], references: Sequence[np.ndarray], estimates: Sequence[np.ndarray],
                       files: Sequence[str] | None = None, times: Sequence[float] | None = None,
                       distance_metric: str = "manhattan") -> Evaluation:
    """SPEC §3 metrics per field and over fields, |ε| by distance to the coast and its mean map."""
    if not (len(grids) == len(references) == len(estimates)) or not grids:
        raise ValueError("need the same positive number of grids, references and estimates")
    acc = Accumulator(distance_metric)
    for k, (grid, ref, est) in enumerate(zip(grids, references, estimates, strict=True)):
        acc.add(grid, ref, est, None if files is None else files[k], None if times is None else times[k])
    return acc.result()


def iter_split(root: str | os.PathLike, split: str = "test", limit: int | None = None):
    """``(steps, n, iterator of (grid, γ reference, file))`` over one split, one sample in memory at a time."""
    from .datasets import NormalizationDataset

    ds = NormalizationDataset(root, split)
    if len(ds) == 0:
        raise ValueError(f"the {split} split of {root} has no samples")
    n = len(ds) if limit is None else min(limit, len(ds))

    def items():
        for k in range(n):
            item = ds[k]
            yield item_grid(item), np.asarray(item["gamma"], dtype=np.float64), \
                str(Path(item["path"]).relative_to(ds.root))

    return ds.steps, n, items()


def evaluate_streaming(estimators: dict[str, Estimator], root: str | os.PathLike, split: str = "test",
                       limit: int | None = None, distance_metric: str = "manhattan",
                       log: Callable[[str], None] | None = None) -> dict[str, Evaluation]:
    """Every estimator on every field of a split, reading each field once and keeping only running sums."""
    steps, n, items = iter_split(root, split, limit)
    accs = {label: Accumulator(distance_metric) for label in estimators}
    for k, (grid, ref, file) in enumerate(items):
        for label, est in estimators.items():
            if k == 0 and getattr(est, "warmup", False):
                est(grid, steps, 0)
            start = time.perf_counter()
            gamma = np.asarray(est(grid, steps, k), dtype=np.float64)
            row = accs[label].add(grid, ref, gamma, file, time.perf_counter() - start)
            if log:
                log(f"[{k + 1}/{n}] {file} {label}: eps_max {row['max']:.3e} eps_mean {row['mean']:.3e} "
                    f"{row['time_s']:.3f} s")
    return {label: acc.result() for label, acc in accs.items()}


# -- methods -------------------------------------------------------------------------------
def parse_method(spec: str, device: str | None = "cpu", force: bool = False,
                 backend: str = "torch", tta: str | list[str] | None = "model",
                 precision: str = "32", exact_small: int | None = None) -> tuple[str, Estimator]:
    """``cnn:MODEL``, ``randomized:N[:SEED]``, ``analytic``, ``images``, ``exact`` → (label, estimator).

    Randomized uses seed ``SEED + field index`` (default SEED 0) so fields get independent noise.
    The CNN is loaded once here; its estimator times one forward pass (batch of 1) per field.
    """
    from .normalization import (
        analytic_normalization,
        exact_normalization,
        image_normalization,
        randomized_normalization,
    )

    kind, _, arg = spec.partition(":")
    if kind == "cnn":
        if not arg:
            raise ValueError("method 'cnn' needs a model: cnn:CHECKPOINT or cnn:sphere-1deg")
        from .prediction import Predictor

        predictor = Predictor.load(arg, device=device, backend=backend, tta=tta, precision=precision,
                                   exact_small=exact_small)

        def cnn(grid: Grid, steps: int, k: int) -> np.ndarray:
            return predictor.predict_grid(grid, steps, force=force)

        cnn.warmup = True
        cnn.predictor = predictor
        label = f"cnn:{Path(arg).name}" + ("" if tta == "model" else f" (tta {tta})") + \
            ("" if precision == "32" else f" ({precision})") + \
            ("" if exact_small is None else f" (exact_small {exact_small})")
        return label, cnn
    if kind == "randomized":
        parts = arg.split(":") if arg else []
        try:
            n = int(float(parts[0])) if parts else 1000
            seed0 = int(parts[1]) if len(parts) > 1 else 0
        except ValueError as exc:
            raise ValueError(f"bad method {spec!r}; use randomized:N or randomized:N:SEED") from exc

        def rand(grid: Grid, steps: int, k: int) -> np.ndarray:
            return randomized_normalization(grid, steps, samples=n, seed=seed0 + k)

        return f"randomized:{n}", rand
    if kind == "analytic" and not arg:
        return "analytic", lambda grid, steps, k: analytic_normalization(grid, steps)
    if kind == "images" and not arg:
        return "images", lambda grid, steps, k: image_normalization(grid, steps)
    if kind == "exact" and not arg:
        return "exact", lambda grid, steps, k: exact_normalization(grid, steps)
    raise ValueError(f"unknown method {spec!r}; use cnn:MODEL, randomized:N, analytic, images or exact")


def evaluate_method(method: str | Estimator, root: str | os.PathLike, split: str = "test",
                    limit: int | None = None, device: str | None = "cpu", force: bool = False,
                    distance_metric: str = "manhattan") -> Evaluation:
    est = parse_method(method, device, force)[1] if isinstance(method, str) else method
    return evaluate_streaming({"method": est}, root, split, limit, distance_metric)["method"]


def compare_methods(methods: Sequence[str], root: str | os.PathLike, split: str = "test", limit: int | None = None,
                    device: str | None = "cpu", force: bool = False, log: Callable[[str], None] | None = None,
                    backend: str = "torch", tta: str | list[str] | None = "model",
                    precision: str = "32", exact_small: int | None = None) -> pd.DataFrame:
    """One row per method: ε_Q9999, ε_max, ε_mean, RMSE (mean and std over fields) and wall time per field."""
    if not methods:
        raise ValueError("no method given")
    # fail early on a bad spec or model
    parsed = [parse_method(m, device, force, backend, tta, precision, exact_small) for m in methods]
    labels = [label for label, _ in parsed]
    dup = {x for x in labels if labels.count(x) > 1}
    if dup:
        raise ValueError(f"method(s) given twice: {', '.join(sorted(dup))}")
    results = evaluate_streaming(dict(parsed), root, split, limit)
    rows = []
    for label, ev in results.items():
        s = ev.summary
        rows.append({"method": label, "fields": len(ev.per_field),
                     **{f"eps_{k}": s[k] for k in ("q9999", "max", "mean", "rmse")},
                     **{f"eps_{k}_std": s[f"{k}_std"] for k in ("q9999", "max", "mean", "rmse")},
                     "time_per_field_s": s["time_s"], "time_per_field_s_std": s["time_s_std"]})
        if log:
            log(f"{label}: eps_Q9999 {s['q9999']:.3e}  eps_max {s['max']:.3e}  eps_mean {s['mean']:.3e}  "
                f"{s['time_s']:.4f} s/field")
    return pd.DataFrame(rows)


# -- tables ----------------------------------------------------------------------------------
def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:.3e}"
    return str(v)


def markdown_table(df: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    columns = list(columns or df.columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(_fmt(row[c]) for c in columns) + " |")
    return "\n".join(lines)


def compare_markdown(table: pd.DataFrame) -> str:
    rows = []
    for _, r in table.iterrows():
        rows.append({"method": r["method"],
                     "ε_Q9999": f"{r['eps_q9999']:.3e} ± {r['eps_q9999_std']:.1e}",
                     "ε_max": f"{r['eps_max']:.3e} ± {r['eps_max_std']:.1e}",
                     "ε_mean": f"{r['eps_mean']:.3e} ± {r['eps_mean_std']:.1e}",
                     "RMSE": f"{r['eps_rmse']:.3e}",
                     "time / field (s)": f"{r['time_per_field_s']:.4g}"})
    return markdown_table(pd.DataFrame(rows))


def write_table(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """CSV, or Markdown when the name ends with .md."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".md":
        path.write_text(compare_markdown(table) + "\n")
    else:
        table.to_csv(path, index=False)
    return path


# -- report -----------------------------------------------------------------------------------
def write_report(ev: Evaluation, out_dir: str | os.PathLike, title: str = "Evaluation",
                 source: str = "") -> Path:
    """``metrics.csv``, ``summary.csv``, ``by_distance.csv``, the figures and ``report.md`` in ``out_dir``."""
    from . import plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ev.per_field.to_csv(out / "metrics.csv", index=False)
    pd.DataFrame([ev.summary]).to_csv(out / "summary.csv", index=False)
    ev.by_distance.to_csv(out / "by_distance.csv", index=False)
    figs = {"error_vs_distance.png": plots.plot_error_vs_distance(ev.by_distance, out / "error_vs_distance.png"),
            "cells_by_distance.png": plots.plot_cells_by_distance(ev.by_distance, out / "cells_by_distance.png")}
    coords = {}
    if ev.example is not None and ev.example[0].lat is not None and ev.example[0].lon is not None:
        coords = {"lat": ev.example[0].lat, "lon": ev.example[0].lon}
    if ev.mask_any.any():
        figs["mean_abs_error_map.png"] = plots.plot_field(
            np.where(ev.mask_any, ev.mean_abs_map, np.nan), out / "mean_abs_error_map.png",
            title="mean |ε| over the fields", label="|ε|", log=True, cmap="magma", **coords)
    if ev.example is not None:
        grid, ref, est = ev.example
        figs["example_gamma.png"] = plots.plot_field(np.where(grid.mask, est, np.nan), out / "example_gamma.png",
                                                     title=f"γ estimated, {ev.per_field['file'].iloc[0]}", label="γ",
                                                     **coords)
        figs["example_error.png"] = plots.plot_error_map(est, ref, grid.mask, out / "example_error.png",
                                                         title=f"ε, {ev.per_field['file'].iloc[0]}", **coords)
    s = ev.summary
    lines = [f"# {title}", ""]
    if source:
        lines += [source, ""]
    lines += [f"{len(ev.per_field)} fields. Errors ε = (γ̂² − γ²)/γ² on ocean cells (SPEC §3): mean ± std over fields.",
              "", "| metric | mean | std |", "| --- | --- | --- |"]
    names = {"q9999": "ε_Q9999 (ε_∞)", "max": "ε_max", "mean": "ε_mean", "rmse": "RMSE"}
    for k in ("q9999", "max", "mean", "rmse"):
        lines.append(f"| {names[k]} | {s[k]:.3e} | {s[k + '_std']:.3e} |")
    if "time_s" in s:
        lines.append(f"| wall time per field (s) | {s['time_s']:.4g} | {s['time_s_std']:.2g} |")
    lines += ["", "## Error against distance to the coast (study figs. 5 and 6)", "",
              "![mean |ε| by distance](error_vs_distance.png)", "", "![ocean cells by distance](cells_by_distance.png)",
              "", markdown_table(ev.by_distance), ""]
    if "mean_abs_error_map.png" in figs:
        lines += ["## Mean |ε| over the fields (study fig. 11)", "", "![mean |ε| map](mean_abs_error_map.png)", ""]
    if ev.example is not None:
        lines += ["## First field", "", "![γ](example_gamma.png)", "", "![ε](example_error.png)", ""]
    lines += ["## Per field", "", markdown_table(ev.per_field), ""]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report


__all__ = ["METRIC_NAMES", "Accumulator", "Evaluation", "compare_methods", "evaluate_estimates", "evaluate_method",
           "evaluate_streaming", "iter_split", "parse_method", "write_report", "write_table"]
