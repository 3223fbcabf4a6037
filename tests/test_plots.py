"""``diffnorm plot``: maps of γ and ε and learning curves are written as PNG files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from diffnorm.cli import main
from diffnorm.grid import Grid
from diffnorm.io import write_gamma
from diffnorm.plots import join_stages, plot_cells_by_distance, plot_error_vs_distance, plot_field

PNG = b"\x89PNG\r\n\x1a\n"


def _grid():
    rng = np.random.default_rng(0)
    mask = rng.random((12, 20)) > 0.2
    lat, lon = np.meshgrid(np.linspace(-30, 30, 12), np.linspace(0, 100, 20), indexing="ij")
    return Grid(mask, np.ones(mask.shape), np.ones(mask.shape), np.ones(mask.shape), lat=lat, lon=lon)


def test_plot_gamma_and_error(tmp_path):
    grid = _grid()
    gamma = np.where(grid.mask, 20 + np.arange(grid.mask.size).reshape(grid.shape) / 10, np.nan)
    write_gamma(tmp_path / "ref.nc", grid, gamma, method="exact", steps=10)
    write_gamma(tmp_path / "est.nc", grid, gamma * 1.01, method="cnn", steps=10)
    assert main(["plot", "gamma", str(tmp_path / "ref.nc"), "-o", str(tmp_path / "g.png")]) == 0
    assert main(["plot", "error", str(tmp_path / "est.nc"), str(tmp_path / "ref.nc"),
                 "-o", str(tmp_path / "e.png")]) == 0
    assert main(["plot", "error", str(tmp_path / "est.nc"), str(tmp_path / "ref.nc"), "--abs",
                 "-o", str(tmp_path / "a.png")]) == 0
    for f in ("g.png", "e.png", "a.png"):
        assert (tmp_path / f).read_bytes()[:8] == PNG


def test_learning_curves_from_lightning_csv(tmp_path):
    # the layout of Lightning's CSVLogger: one row per log call, blanks elsewhere
    rows = []
    for step in range(0, 200, 10):
        rows.append({"epoch": step // 50, "step": step, "train_loss": 1.0 / (1 + step), "val_loss": None,
                     "val_eps_max": None})
        if step % 50 == 40:
            rows.append({"epoch": step // 50, "step": step, "train_loss": None, "val_loss": 2.0 / (1 + step),
                         "val_eps_max": 0.5 / (1 + step)})
    d = tmp_path / "logs" / "version_0"
    d.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(d / "metrics.csv", index=False)
    assert main(["plot", "curves", str(tmp_path / "logs"), "-o", str(tmp_path / "c.png")]) == 0
    assert main(["plot", "curves", str(d / "metrics.csv"), "--keys", "val_eps_max", "--x", "epoch",
                 "-o", str(tmp_path / "c2.png")]) == 0
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG and (tmp_path / "c2.png").read_bytes()[:8] == PNG
    assert main(["plot", "curves", str(d / "metrics.csv"), "--keys", "nope", "-o", str(tmp_path / "c3.png")]) == 1


def test_distance_figures_and_field(tmp_path):
    by = pd.DataFrame({"distance": [1, 2, 3], "cells": [10, 8, 5], "fraction": [10 / 23, 8 / 23, 5 / 23],
                       "mean_abs_eps": [1e-2, 5e-3, 2e-3], "max_abs_eps": [5e-2, 1e-2, 4e-3]})
    for p in (plot_error_vs_distance(by, tmp_path / "a.png"), plot_cells_by_distance(by, tmp_path / "b.png"),
              plot_field(np.full((3, 4), np.nan), tmp_path / "c.png", log=True)):
        assert p.read_bytes()[:8] == PNG


def _stage_log(steps: int, epochs_every: int = 10) -> pd.DataFrame:
    rows = [{"epoch": s // epochs_every, "step": s, "train_loss_step": 1.0 / (1 + s), "val_eps_max": None}
            for s in range(steps)]
    rows.append({"epoch": (steps - 1) // epochs_every, "step": steps - 1, "train_loss_step": None,
                 "val_eps_max": 0.1})
    return pd.DataFrame(rows)


def test_join_stages_continues_steps_and_epochs():
    # stages of 30 and 20 steps (epochs 0-2 and 0-1) -> steps 0-49, epochs 0-4, the restart at step 30
    joined, starts = join_stages([_stage_log(30), _stage_log(20), _stage_log(5)])
    assert starts == [30, 50]
    assert joined["step"].tolist()[:30] == list(range(30))
    assert sorted(set(joined["step"])) == list(range(55))
    assert sorted(set(joined["epoch"])) == list(range(6))
    assert joined["val_eps_max"].notna().sum() == 3
    with pytest.raises(ValueError, match="no log"):
        join_stages([])


def test_learning_curves_of_stages_with_reference_lines(tmp_path):
    logs = []
    for k, n in enumerate((30, 20)):
        d = tmp_path / f"version_{k}"
        d.mkdir()
        _stage_log(n).to_csv(d / "metrics.csv", index=False)
        logs.append(str(d))
    out = tmp_path / "stages.png"
    assert main(["plot", "curves", *logs, "--title", "two stages", "--reference", "randomized N=1e4 ε_max=0.059",
                 "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG
    assert main(["plot", "curves", *logs, "--reference", "no value", "-o", str(tmp_path / "x.png")]) == 1
    assert not (tmp_path / "x.png").exists()


def test_learning_curves_of_separate_runs_are_overlaid_from_step_zero(tmp_path, monkeypatch):
    """--runs: each log keeps its own steps (stages are shifted), one colour a run, one label a run and metric."""
    import diffnorm.plots as plots

    logs = []
    for name, n in (("a", 30), ("b", 20)):
        _stage_log(n).to_csv(tmp_path / f"{name}.csv", index=False)
        logs.append(str(tmp_path / f"{name}.csv"))
    figures = []
    real_save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or real_save(fig, path))
    out = tmp_path / "runs.png"
    assert main(["plot", "curves", *logs, "--runs", "a", "b", "--keys", "val_eps_max", "train_loss_step",
                 "--reference", "goal=0.01", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG
    lines = {ln.get_label(): ln for ax in figures[0].axes for ln in ax.get_lines()}
    assert lines["a: val_eps_max"].get_xdata().tolist() == [29]
    assert lines["b: val_eps_max"].get_xdata().tolist() == [19]  # joined as a stage it would be 49
    assert lines["b: train_loss_step"].get_xdata().tolist() == list(range(20))
    assert lines["a: val_eps_max"].get_color() != lines["b: val_eps_max"].get_color()
    assert lines["a: val_eps_max"].get_color() == lines["a: train_loss_step"].get_color()
    assert "goal" in lines
    with pytest.raises(ValueError, match="1 run name"):
        plots.plot_learning_curves(logs, tmp_path / "x.png", runs=["a"])
    with pytest.raises(ValueError, match="must differ"):
        plots.plot_learning_curves(logs, tmp_path / "x.png", runs=["a", "a"])
