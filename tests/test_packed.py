"""benchmarks/pack_fields.py + train_packed.py: training from one .npz on machines without NetCDF/Dask."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from diffnorm.datamodules import NormalizationDataModule
from diffnorm.pretrained import load_model
from tests.conftest import PACKED_DATA, make_tiny_dataset

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
pack_fields = pytest.importorskip("pack_fields")
train_packed = pytest.importorskip("train_packed")

DATA = PACKED_DATA


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("packed")
    make_tiny_dataset(tmp / "d", seed=3, splits={"train": 2, "val": 1, "test": 0})
    config = tmp / "cfg.yaml"
    config.write_text(yaml.safe_dump({
        "seed_everything": 0,
        "trainer": {"max_epochs": 2, "enable_progress_bar": False, "accelerator": "cpu",
                    "logger": [{"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "r"}}]},
        "model": {"model": "cnn", "model_kwargs": {"filters": 4, "blocks": 1, "skip": "v2"}, "lr": 1e-3},
        "data": {"data_dirs": [str(tmp / "d")], **DATA}}))
    pack_fields.pack(str(config), str(tmp / "fields.npz"))
    return tmp, config


def test_packed_fields_equal_the_data_set_to_float32(packed):
    tmp, _ = packed
    ref = NormalizationDataModule(str(tmp / "d"), **DATA)
    new = train_packed.PackedDataModule(str(tmp / "fields.npz"), data_dirs=["unused"], **DATA)
    for dm in (ref, new):
        dm.setup("fit")
    assert [len(ref.fields[s]) for s in ("train", "val")] == [len(new.fields[s]) for s in ("train", "val")] == [2, 1]
    for a, b in zip(ref.fields["train"] + ref.fields["val"], new.fields["train"] + new.fields["val"], strict=True):
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.valid, b.valid)
        np.testing.assert_allclose(b.x, a.x, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(b.y[a.mask], a.y[a.mask], rtol=0, atol=1e-6)
    np.testing.assert_allclose(new.input_transform.mean, ref.input_transform.mean, rtol=1e-6, atol=1e-7)


def test_train_packed_writes_a_checkpoint_that_loads_weights_only(packed, monkeypatch):
    tmp, config = packed
    monkeypatch.chdir(tmp)
    out = tmp / "run"
    monkeypatch.setattr(sys, "argv", ["train_packed", str(config), str(tmp / "fields.npz"), str(out),
                                      "--workers", "1"])
    train_packed.main()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["epochs"] == 2 and summary["device"] == "cpu"
    assert torch.load(out / "last.ckpt", weights_only=True)["global_step"] == 4
    model, meta = load_model(out / "last.ckpt")
    assert meta["channels"] == DATA["channels"] and meta["target"] == "log_ratio_images"
    assert (out / "metrics.csv").read_text().count("val_eps_mean") == 1


def test_train_packed_warm_start(packed, monkeypatch):
    tmp, config = packed
    monkeypatch.chdir(tmp)
    out = tmp / "warm"
    monkeypatch.setattr(sys, "argv", ["train_packed", str(config), str(tmp / "fields.npz"), str(out),
                                      "--workers", "0", "--init-weights", str(tmp / "run" / "last.ckpt")])
    train_packed.main()  # a warm-started run trains and records where it started from
    assert json.loads((out / "summary.json").read_text())["init_weights"].endswith("last.ckpt")
    assert torch.load(out / "last.ckpt", weights_only=True)["hyper_parameters"]["init_weights"].endswith("last.ckpt")


def test_time_only_times_a_model_without_data(packed, monkeypatch, capsys):
    tmp, _ = packed
    monkeypatch.setattr(sys, "argv", ["train_packed", "--time-only", str(tmp / "run" / "last.ckpt"), "--repeat", "2"])
    train_packed.main()
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["device"] == "cpu" and set(result["forward_ms"]) == {"batch1", "batch4"}
    assert all(v > 0 for v in result["forward_ms"].values())


@pytest.mark.parametrize("text, expected", [
    ('{"model": {"lr": 3e-4}}', {"model": {"lr": 3e-4}}),  # JSON: a number, where YAML 1.1 would give text
    ("model: {lr: 3.0e-4, model_kwargs: {filters: 64}}", {"model": {"lr": 3e-4, "model_kwargs": {"filters": 64}}}),
    ("", {}),
])
def test_override_reads_json_numbers_as_numbers(text, expected):
    assert train_packed.parse_override(text) == expected


def test_override_that_is_not_a_mapping_is_refused():
    with pytest.raises(SystemExit, match="mapping"):
        train_packed.parse_override("[1, 2]")


def test_pack_fit_pairs_models_on_the_training_fields(packed):
    pack_fit = pytest.importorskip("pack_fit")
    tmp, _ = packed
    ckpt = str(tmp / "run" / "last.ckpt")  # written by test_train_packed_writes_a_checkpoint_that_loads_weights_only
    if not Path(ckpt).exists():
        pytest.skip("needs the checkpoint of the train_packed test")
    tables = pack_fit.score(str(tmp / "fields.npz"), [ckpt, ckpt], every=1)
    assert len(tables[0]) == 2  # the pack's two training fields
    assert tables[0] == tables[1]  # the same model: the same errors
    text = pack_fit.markdown(["a", "b"], tables, 1)
    # both rows are a model against itself: ratio 1 on each of the 3 metrics, no field lower
    assert text.count("1.0000 ± 0.0000 | 0/2") == 6
    with pytest.raises(ValueError, match="every"):
        next(pack_fit.training_fields(str(tmp / "fields.npz"), 0))


def _synthetic_batch_gradients(rng, k, batch_size, signal, sigma):
    """k batch gradients of batch_size patches: a fixed signal plus the mean of batch_size patches' N(0, σ²) noise."""
    return signal + rng.normal(0.0, sigma / np.sqrt(batch_size), size=(k, signal.size))


def test_noise_scale_recovers_a_known_noise_scale():
    noise_scale = pytest.importorskip("noise_scale")
    rng = np.random.default_rng(0)
    signal = rng.normal(size=400)
    sigma = 3.0
    truth = signal.size * sigma**2 / float(signal @ signal)  # B_simple = tr(Σ)/|G|², about 9 patches
    estimates, errors = [], []
    for _ in range(40):
        out = noise_scale.noise_scale(_synthetic_batch_gradients(rng, 60, 4, signal, sigma), 4)
        estimates.append(out["b_simple"])
        errors.append(out["b_simple_se"])
        assert out["batches"] == 60 and out["batch_size"] == 4
    estimates = np.array(estimates)
    # unbiased to within the scatter of 40 repetitions, and the jackknife error matches that scatter
    assert abs(estimates.mean() - truth) < 3 * estimates.std(ddof=1) / np.sqrt(len(estimates))
    assert 0.7 < np.mean(errors) / estimates.std(ddof=1) < 1.4
    # the noise trace is tr(Σ) of one patch, and the signal share |G|²/(|G|² + tr(Σ)/b) = 1/(1 + B/b)
    assert out["noise_trace"] == pytest.approx(signal.size * sigma**2, rel=0.05)
    assert out["signal_share"] == pytest.approx(1 / (1 + truth / 4), rel=0.1)


def test_noise_scale_refuses_too_few_batches_and_bad_sizes():
    noise_scale = pytest.importorskip("noise_scale")
    with pytest.raises(ValueError, match="at least 3 batch gradients"):
        noise_scale.noise_scale(np.ones((2, 5)), 4)
    with pytest.raises(ValueError, match="at least 3 batch gradients"):
        noise_scale.noise_scale(np.ones(5), 4)
    with pytest.raises(ValueError, match="batch_size"):
        noise_scale.noise_scale(np.ones((3, 5)), 0)


def test_noise_scale_script_measures_a_model_on_a_pack(packed, monkeypatch, capsys):
    noise_scale = pytest.importorskip("noise_scale")
    tmp, config = packed
    ckpt = tmp / "run" / "last.ckpt"  # written by test_train_packed_writes_a_checkpoint_that_loads_weights_only
    if not ckpt.exists():
        pytest.skip("needs the checkpoint of the train_packed test")
    results = []
    for name in ("a.json", "b.json"):
        monkeypatch.setattr(sys, "argv", ["noise_scale", str(config), str(tmp / "fields.npz"), "--init-weights",
                                          str(ckpt), "--batches", "4", "-o", str(tmp / name)])
        noise_scale.main()
        results.append(json.loads((tmp / name).read_text()))
    out = results[0]
    model, _ = load_model(ckpt)
    assert out["batches"] == 4 and out["parameters"] == sum(p.numel() for p in model.parameters())
    assert out["noise_trace"] > 0 and np.isfinite(out["grad_norm2"]) and out["mean_loss"] > 0
    # seeded patches at fixed weights: the same gradients, so the same estimate, twice
    assert {k: v for k, v in results[1].items() if k != "seconds"} == {k: v for k, v in out.items() if k != "seconds"}
