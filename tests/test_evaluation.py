"""``diffnorm evaluate`` and ``diffnorm compare`` on a tiny generated data set, numbers checked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from diffnorm.cli import main
from diffnorm.datasets import NormalizationDataset
from diffnorm.evaluation import evaluate_estimates, item_grid, parse_method
from diffnorm.features import compute_features, grid_signed_distance
from diffnorm.generation import generate_dataset
from diffnorm.normalization import analytic_normalization
from diffnorm.prediction import save_bundle
from diffnorm.transforms import Standardizer
from tests.conftest import TinyNet

CHANNELS = ["mask", "area", "diff_x", "diff_y", "analytic"]
CONFIG = {"family": "coast", "family_params": {"lat_range": [30, 46], "lon_range": [-80, -56], "res": 1.0},
          "generator": "isotropic", "generator_params": {"min_length": 1.0, "max_length": 3.0},
          "steps": 10, "seed": 3, "splits": {"train": 2, "val": 1, "test": 3}}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalds")
    generate_dataset(root / "ds", CONFIG, scheduler="synchronous", progress=False)
    train = [item_grid(it) for it in NormalizationDataset(root / "ds", "train")]
    x = np.stack([np.stack([compute_features(g, 10, CHANNELS)[c] for c in CHANNELS]) for g in train])
    std = Standardizer("partial", CHANNELS).fit(x, np.stack([g.mask for g in train]))
    torch.manual_seed(1)
    model = TinyNet(len(CHANNELS), "relu").eval()
    meta = {"channels": CHANNELS, "steps": 10, "standardizer": std.to_dict(), "target": "log_ratio_analytic",
            "target_mean": 0.0, "target_std": 0.02}
    save_bundle(model, meta, root / "tiny.pt")
    return root, model, meta


def cnn_gamma(model, meta, grid):
    std = Standardizer.from_dict(meta["standardizer"])
    feats = compute_features(grid, 10, CHANNELS)
    x = std.transform(np.stack([feats[c] for c in CHANNELS]), grid.mask).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)[None])[0, 0].double().numpy() * meta["target_std"]
    return analytic_normalization(grid, 10) * np.exp(y)


def test_evaluate_aggregates_equal_hand_computation(data, tmp_path):
    root, model, meta = data
    out = tmp_path / "ev"
    assert main(["evaluate", str(root / "tiny.pt"), str(root / "ds"), "--split", "test", "-o", str(out)]) == 0
    per = pd.read_csv(out / "metrics.csv")
    summary = pd.read_csv(out / "summary.csv").iloc[0]
    items = list(NormalizationDataset(root / "ds", "test"))
    assert len(per) == 3
    hand, abs_sum, abs_cnt = [], {}, {}
    map_sum = np.zeros(items[0]["mask"].shape)
    map_cnt = np.zeros_like(map_sum)
    for it, (_, row) in zip(items, per.iterrows(), strict=True):
        grid = item_grid(it)
        o = grid.mask
        g_hat, g = cnn_gamma(model, meta, grid)[o], it["gamma"][o]
        eps = (g_hat**2 - g**2) / g**2
        a = np.sort(np.abs(eps))
        # quantile 0.9999 with linear interpolation, by hand
        pos = 0.9999 * (a.size - 1)
        q = a[int(np.floor(pos))] + (pos - np.floor(pos)) * (a[int(np.ceil(pos))] - a[int(np.floor(pos))])
        m = {"rmse": np.sqrt(np.mean(eps**2)), "q9999": q, "max": a[-1], "mean": a.mean()}
        hand.append(m)
        for k, v in m.items():
            assert row[k] == pytest.approx(v, rel=1e-6)
        d = np.rint(grid_signed_distance(grid, "manhattan")[o]).astype(int)
        for dist, e in zip(d, np.abs(eps), strict=True):
            abs_sum[dist] = abs_sum.get(dist, 0.0) + e
            abs_cnt[dist] = abs_cnt.get(dist, 0) + 1
        map_sum[o] += np.abs(eps)
        map_cnt[o] += 1
    for k in ("rmse", "q9999", "max", "mean"):
        values = np.array([h[k] for h in hand])
        assert summary[k] == pytest.approx(values.mean(), rel=1e-6)
        assert summary[f"{k}_std"] == pytest.approx(np.sqrt(np.mean((values - values.mean()) ** 2)), rel=1e-6)
    by = pd.read_csv(out / "by_distance.csv").set_index("distance")
    assert sorted(by.index) == sorted(abs_cnt)
    for dist in abs_cnt:
        assert by.loc[dist, "cells"] == abs_cnt[dist]
        assert by.loc[dist, "mean_abs_eps"] == pytest.approx(abs_sum[dist] / abs_cnt[dist], rel=1e-6)
    assert by["fraction"].sum() == pytest.approx(1.0)
    report = (out / "report.md").read_text()
    for png in ("error_vs_distance.png", "cells_by_distance.png", "mean_abs_error_map.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png in report
    assert f"{summary['mean']:.3e}" in report


def test_mean_abs_map_by_hand():
    rng = np.random.default_rng(0)
    from diffnorm.grid import Grid

    mask1 = np.ones((4, 5), bool)
    mask2 = mask1.copy()
    mask2[0, 0] = False
    grids = [Grid(m, np.ones((4, 5)), np.ones((4, 5)), np.ones((4, 5))) for m in (mask1, mask2)]
    refs = [np.where(g.mask, rng.uniform(1, 2, (4, 5)), np.nan) for g in grids]
    ests = [r * (1 + 0.01 * rng.standard_normal((4, 5))) for r in refs]
    ev = evaluate_estimates(grids, refs, ests)
    e = [np.abs((x**2 - r**2) / r**2) for x, r in zip(ests, refs, strict=True)]
    assert ev.mean_abs_map[0, 0] == pytest.approx(e[0][0, 0])
    assert ev.mean_abs_map[2, 3] == pytest.approx((e[0][2, 3] + e[1][2, 3]) / 2)


def test_compare_randomized_matches_sqrt_2_over_n(data, tmp_path, capsys):
    root, model, meta = data
    csv, md = tmp_path / "t.csv", tmp_path / "t.md"
    assert main(["compare", str(root / "ds"), "--methods", f"cnn:{root / 'tiny.pt'}", "randomized:100",
                 "randomized:1000", "analytic", "images", "exact", "-o", str(csv), "-o", str(md)]) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(csv).set_index("method")
    assert list(table.index) == ["cnn:tiny.pt", "randomized:100", "randomized:1000", "analytic", "images", "exact"]
    assert (table["fields"] == 3).all() and (table["time_per_field_s"] > 0).all()
    for n in (100, 1000):
        rmse = table.loc[f"randomized:{n}", "eps_rmse"]
        # ε ≈ −δ with δ the relative error of v̂, std sqrt(2/N); ~1000 cells per field → a few % spread
        assert rmse == pytest.approx(np.sqrt(2 / n), rel=0.15)
        # mean |ε| of a Gaussian: sqrt(2/π)·σ
        assert table.loc[f"randomized:{n}", "eps_mean"] == pytest.approx(np.sqrt(2 / np.pi) * np.sqrt(2 / n), rel=0.15)
        assert table.loc[f"randomized:{n}", "eps_max"] > table.loc[f"randomized:{n}", "eps_mean"]
    assert table.loc["exact", "eps_max"] < 1e-9
    assert table.loc["analytic", "eps_max"] > 0.05  # wrong near coasts, as SPEC §2 says
    assert table.loc["images", "eps_mean"] < table.loc["analytic", "eps_mean"] / 2  # coasts' images help
    # the CNN row equals an evaluation of the same network
    items = list(NormalizationDataset(root / "ds", "test"))
    grids = [item_grid(it) for it in items]
    ev = evaluate_estimates(grids, [it["gamma"] for it in items], [cnn_gamma(model, meta, g) for g in grids])
    assert table.loc["cnn:tiny.pt", "eps_q9999"] == pytest.approx(ev.summary["q9999"], rel=1e-6)
    assert "randomized:1000" in md.read_text() and "| method |" in printed


def test_method_parsing_errors():
    with pytest.raises(ValueError, match="unknown method"):
        parse_method("magic")
    with pytest.raises(ValueError, match="needs a model"):
        parse_method("cnn")
    with pytest.raises(ValueError, match="randomized:N"):
        parse_method("randomized:many")
    assert parse_method("randomized:1e3")[0] == "randomized:1000"


def test_compare_missing_dataset(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nope"), "--methods", "analytic"]) == 1
    assert "error" in capsys.readouterr().err


def test_evaluate_a_method_and_limit(data, tmp_path):
    root, _, _ = data
    out = tmp_path / "evr"
    assert main(["evaluate", "randomized:400", str(root / "ds"), "--limit", "2", "-v", "-o", str(out)]) == 0
    summary = pd.read_csv(out / "summary.csv").iloc[0]
    assert len(pd.read_csv(out / "metrics.csv")) == 2
    assert summary["rmse"] == pytest.approx(np.sqrt(2 / 400), rel=0.15)


def test_lightning_checkpoint_end_to_end(data, tmp_path, capsys):
    """A checkpoint of ``diffnorm train`` through every command: evaluate's numbers equal the training code's own
    ``predict_gamma``, predict writes the same γ, export matches PyTorch, plot curves reads its CSV log."""
    L = pytest.importorskip("lightning")
    pytest.importorskip("diffnorm.trainers")
    from diffnorm.datamodules import NormalizationDataModule
    from diffnorm.io import read_gamma
    from diffnorm.pretrained import load_model, predict_gamma
    from diffnorm.trainers import NormalizationTask

    root = data[0]
    channels = ["mask", "distance", "sf_diff_x", "sf_diff_y", "analytic_sf"]
    L.seed_everything(0, workers=True)
    dm = NormalizationDataModule(str(root / "ds"), channels=channels, target="log_ratio_analytic", patch_size=8,
                                 samples_per_epoch=4, batch_size=4)
    task = NormalizationTask("cnn", {"filters": 8, "blocks": 1, "skip": "v2"}, channels=channels,
                             target="log_ratio_analytic", loss="mse", lr=3e-3)
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ck"), save_last=True)
    trainer = L.Trainer(max_epochs=2, logger=L.pytorch.loggers.CSVLogger(str(tmp_path / "logs")), callbacks=[ckpt],
                        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
                        accelerator="cpu", devices=1)
    trainer.fit(task, dm)
    last = tmp_path / "ck" / "last.ckpt"
    model, meta = load_model(last)

    assert main(["evaluate", str(last), str(root / "ds"), "-o", str(tmp_path / "ev")]) == 0
    per = pd.read_csv(tmp_path / "ev" / "metrics.csv")
    items = list(NormalizationDataset(root / "ds", "test"))
    for it, (_, row) in zip(items, per.iterrows(), strict=True):
        grid = item_grid(it)
        g = predict_gamma(model, meta, grid)
        eps = (g[grid.mask] ** 2 - it["gamma"][grid.mask] ** 2) / it["gamma"][grid.mask] ** 2
        assert row["max"] == pytest.approx(np.abs(eps).max(), rel=1e-6)
        assert row["mean"] == pytest.approx(np.abs(eps).mean(), rel=1e-6)

    assert main(["compare", str(root / "ds"), "--methods", f"cnn:{last}", "analytic", "--limit", "1"]) == 0
    assert "cnn:last.ckpt" in capsys.readouterr().out

    sample = root / "ds" / "test" / "sample_000000.nc"
    assert main(["predict", str(last), str(sample), "-o", str(tmp_path / "g.nc")]) == 0
    grid = item_grid(items[0])
    np.testing.assert_allclose(read_gamma(tmp_path / "g.nc")[grid.mask], predict_gamma(model, meta, grid)[grid.mask],
                               rtol=1e-6)
    # --exact-small as large as the grid: every component exact, so γ is the data set's exact label and ε ≈ 0
    n_all = str(grid.mask.size)
    assert main(["predict", str(last), str(sample), "--exact-small", n_all, "-o", str(tmp_path / "x.nc")]) == 0
    np.testing.assert_allclose(read_gamma(tmp_path / "x.nc")[grid.mask], items[0]["gamma"][grid.mask], rtol=1e-6)
    assert main(["evaluate", str(last), str(root / "ds"), "--exact-small", n_all, "-o", str(tmp_path / "ev0")]) == 0
    assert pd.read_csv(tmp_path / "ev0" / "metrics.csv")["max"].max() < 1e-5
    capsys.readouterr()
    assert main(["compare", str(root / "ds"), "--methods", f"cnn:{last}", "--exact-small", "0", "--limit", "1"]) == 0
    assert "cnn:last.ckpt (exact_small 0)" in capsys.readouterr().out

    assert main(["export", str(last), "--format", "onnx", "-o", str(tmp_path / "m.onnx")]) == 0
    assert main(["plot", "curves", str(tmp_path / "logs"), "-o", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 1000
