"""Training with Lightning: overfitting, determinism, resume, checkpoint loading, DDP, CLI."""

import csv
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from diffnorm.datamodules import NormalizationDataModule
from diffnorm.datasets import NormalizationDataset
from diffnorm.metrics import sample_metrics
from diffnorm.pretrained import export_checkpoint, load_model, predict_gamma
from diffnorm.trainers import NormalizationTask
from diffnorm.trainers.cli import LatestCheckpoint
from diffnorm.transforms.inputs import grid_from_fields
from tests.conftest import make_tiny_dataset, make_tiny_global_dataset

CHANNELS = ["mask", "distance", "sf_diff_x", "sf_diff_y", "analytic_sf"]
SMALL = {"filters": 8, "blocks": 2, "skip": "v2"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tiny_global(tmp_path_factory):
    return make_tiny_global_dataset(tmp_path_factory.mktemp("tiny_global"))


def _fit(root, out, epochs, ckpt_path=None, model_kwargs=SMALL, lr=3e-3, patch=8, task_kw=None, trainer_kw=None,
         **dm_kw):
    L.seed_everything(0, workers=True)
    dm = NormalizationDataModule(str(root), channels=CHANNELS, target="log_ratio_analytic", patch_size=patch,
                                 samples_per_epoch=8, batch_size=4, augment=True, **dm_kw)
    task = NormalizationTask("cnn", model_kwargs, channels=CHANNELS, target="log_ratio_analytic", loss="mse", lr=lr,
                             **(task_kw or {}))
    best = L.pytorch.callbacks.ModelCheckpoint(dirpath=str(out), monitor="val_eps_max")
    trainer = L.Trainer(max_epochs=epochs, deterministic=True, logger=L.pytorch.loggers.CSVLogger(str(out)),
                        callbacks=[best, LatestCheckpoint(dirpath=str(out))], enable_progress_bar=False,
                        enable_model_summary=False, log_every_n_steps=1, accelerator="cpu", devices=1,
                        **(trainer_kw or {}))
    trainer.fit(task, dm, ckpt_path=ckpt_path)
    return task, trainer


def test_tiny_model_overfits(tiny, tmp_path):
    task, trainer = _fit(tiny, tmp_path, 60, model_kwargs={"filters": 16, "blocks": 2, "skip": "v2"}, patch=None,
                         max_train=1)
    rows = list(csv.DictReader(open(Path(trainer.logger.log_dir) / "metrics.csv")))
    losses = [float(r["train_loss_epoch"]) for r in rows if r.get("train_loss_epoch")]
    assert losses[-1] < losses[0] / 100, (losses[0], losses[-1])
    for key in ("val_loss", "val_eps_q9999", "val_eps_max", "val_eps_mean", "val_rmse"):
        assert any(r.get(key) for r in rows), key


def test_bf16_mixed_precision_trains(tiny, tmp_path):
    """``trainer.precision: bf16-mixed`` (4x faster steps for 32 filters on CPUs with AMX): the loss still falls
    by 30x on the tiny set, and the checkpoint holds float32 weights."""
    task, trainer = _fit(tiny, tmp_path, 60, model_kwargs={"filters": 16, "blocks": 2, "skip": "v2"}, patch=None,
                         max_train=1, trainer_kw={"precision": "bf16-mixed"})
    rows = list(csv.DictReader(open(Path(trainer.logger.log_dir) / "metrics.csv")))
    losses = [float(r["train_loss_epoch"]) for r in rows if r.get("train_loss_epoch")]
    assert losses[-1] < losses[0] / 30, (losses[0], losses[-1])
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())


def test_same_seed_same_weights_and_resume(tiny, tmp_path):
    a, _ = _fit(tiny, tmp_path / "a", 4)
    b, _ = _fit(tiny, tmp_path / "b", 4)
    _fit(tiny, tmp_path / "c", 2)
    c, _ = _fit(tiny, tmp_path / "c2", 4, ckpt_path=str(tmp_path / "c" / "last.ckpt"))
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0)
        torch.testing.assert_close(sa[k], sc[k], rtol=1e-6, atol=1e-7)


def test_compile_and_channels_last_train_the_same_model(tiny, tmp_path):
    """torch.compile + channels-last only change speed: same weights as eager NCHW up to float rounding, and a
    checkpoint with the plain model's keys (loadable by the eager model)."""
    a, _ = _fit(tiny, tmp_path / "a", 2)
    b, _ = _fit(tiny, tmp_path / "b", 2, task_kw={"compile": True, "channels_last": True})
    assert "body" in vars(b.model)  # really compiled
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        # conv biases followed by batch norm have a zero gradient, so Adam turns their rounding noise into lr-sized
        # steps (and the BN running means follow them): compare everything else
        if not (k.endswith("conv.bias") or k.endswith("running_mean") or k.endswith("num_batches_tracked")):
            torch.testing.assert_close(sa[k], sb[k], rtol=1e-3, atol=1e-4)
    x = torch.randn(2, len(CHANNELS), 12, 10)
    state = torch.load(tmp_path / "b" / "last.ckpt", weights_only=True)["state_dict"]
    eager = NormalizationTask("cnn", SMALL, channels=CHANNELS, target="log_ratio_analytic")
    eager.load_state_dict(state)  # the compiled run's checkpoint loads into a plain model
    with torch.no_grad():  # batch statistics (train mode) cancel the drifting biases: the same function
        torch.testing.assert_close(eager.train()(x), a.train()(x), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("weighting", [{"coast_weight": 4.0, "coast_radius": 1},
                                       {"tail_weight": 1.0, "tail_fraction": 0.05}])
def test_weighted_loss_trains_and_changes_the_fit(tiny, tmp_path, weighting):
    """coast-weighted and tail-weighted training losses run end to end and reach the gradients."""
    plain, _ = _fit(tiny, tmp_path / "plain", 2)
    weighted, trainer = _fit(tiny, tmp_path / "weighted", 2, task_kw=weighting)
    rows = list(csv.DictReader(open(Path(trainer.logger.log_dir) / "metrics.csv")))
    losses = [float(r["train_loss_epoch"]) for r in rows if r.get("train_loss_epoch")]
    assert len(losses) == 2 and all(np.isfinite(losses))
    w0 = plain.model.output_layer.conv.weight
    assert not torch.allclose(w0, weighted.model.output_layer.conv.weight)  # the weighting reached the gradients


def test_checkpoint_loads_weights_only_and_predicts(tiny, tmp_path):
    task, trainer = _fit(tiny, tmp_path, 2)
    model, meta = load_model(tmp_path / "last.ckpt")
    assert not model.training and meta["steps"] == 4 and meta["channels"] == CHANNELS
    from diffnorm.datasets import NormalizationDataset

    item = NormalizationDataset(tiny, "test")[0]
    grid = grid_from_fields(item)
    gamma = predict_gamma(model, meta, grid)
    assert np.isnan(gamma[~grid.mask]).all() and np.all(gamma[grid.mask] > 0)
    # the task's own test metrics agree with SPEC §3 on the de-standardized γ
    res = trainer.test(task, datamodule=trainer.datamodule, ckpt_path=str(tmp_path / "last.ckpt"), verbose=False)[0]
    assert res["test_eps_max"] == pytest.approx(sample_metrics(gamma, item["gamma"])["max"], rel=1e-4)
    slim = export_checkpoint(tmp_path / "last.ckpt", tmp_path / "m.pt")
    m2, meta2 = load_model(slim)
    np.testing.assert_allclose(predict_gamma(m2, meta2, grid), gamma, rtol=1e-6)
    from diffnorm.prediction import Predictor

    np.testing.assert_allclose(Predictor(m2, meta2).predict_grid(grid), gamma, rtol=1e-6)
    # the prediction threshold of exact γ can be set at export without touching the rest of the meta data
    m3, meta3 = load_model(export_checkpoint(tmp_path / "last.ckpt", tmp_path / "m3.pt", exact_small=300))
    assert meta3["target_transform"] == {**meta2["target_transform"], "exact_small": 300}
    assert meta3["training"]["exact_small"] == meta2["target_transform"]["exact_small"]  # what training used
    assert json.loads((tmp_path / "m3.json").read_text())["target_transform"]["exact_small"] == 300
    with pytest.raises(ValueError, match="exact_small"):
        export_checkpoint(tmp_path / "last.ckpt", tmp_path / "m4.pt", exact_small=-1)


def _config(tmp_path, root, extra=""):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"""
seed_everything: 0
trainer:
  max_epochs: 1
  accelerator: cpu
  enable_progress_bar: false
  logger:
  - class_path: lightning.pytorch.loggers.CSVLogger
    init_args: {{save_dir: {tmp_path}/runs, name: t}}
{extra}
model:
  model_kwargs: {{filters: 4, blocks: 1, skip: v1}}
data:
  data_dirs: [{root}]
  channels: [diff_x, diff_y, area, mask]
  target: gamma
  patch_size: 8
  samples_per_epoch: 4
  batch_size: 2
""")
    return cfg


def _run_cli(args, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([str(Path(sys.executable).parent / "diffnorm"), "train", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_fit_and_resume(tiny, tmp_path):
    cfg = _config(tmp_path, tiny)
    # a monitor that never improves after epoch 0: last.ckpt must still be the final state, not the best one
    r = _run_cli(["fit", "--config", str(cfg), "--trainer.max_epochs", "2", "--checkpoint.monitor", "epoch",
                  "--checkpoint.mode", "min"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    last = tmp_path / "runs" / "t" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 1
    r = _run_cli(["fit", "--config", str(cfg), "--trainer.max_epochs", "1"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    last = tmp_path / "runs" / "t" / "version_1" / "checkpoints" / "last.ckpt"
    assert last.exists()
    r = _run_cli(["fit", "--config", str(cfg), "--trainer.max_epochs", "2", "--ckpt_path", str(last)], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert torch.load(tmp_path / "runs" / "t" / "version_2" / "checkpoints" / "last.ckpt",
                      weights_only=True)["epoch"] == 1


def test_warm_start_copies_the_weights_and_refuses_another_model(tiny, tmp_path):
    source, _ = _fit(tiny, tmp_path / "a", 2)
    last = str(tmp_path / "a" / "last.ckpt")
    fresh = NormalizationTask("cnn", SMALL, channels=CHANNELS, target="log_ratio_analytic")
    warm = NormalizationTask("cnn", SMALL, channels=CHANNELS, target="log_ratio_analytic", init_weights=last)
    trained = source.model.state_dict()
    assert not all(torch.equal(v, fresh.model.state_dict()[k]) for k, v in trained.items())
    assert all(torch.equal(v, warm.model.state_dict()[k]) for k, v in trained.items())
    with pytest.raises(ValueError, match="channels/target"):
        NormalizationTask("cnn", SMALL, channels=CHANNELS, target="log_ratio_images", init_weights=last)
    with pytest.raises(ValueError, match="another network"):
        NormalizationTask("cnn", {**SMALL, "filters": 4}, channels=CHANNELS, target="log_ratio_analytic",
                          init_weights=last)


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": "3e-4"}, "lr must be a positive number, got '3e-4' .YAML 1.1"),  # what PyYAML makes of 3e-4
    ({"lr": 0.0}, "lr must be a positive number"),
    ({"lr": float("nan")}, "lr must be a positive number"),
    ({"weight_decay": -1e-4}, "weight_decay must be a non-negative number"),
])
def test_bad_rates_get_a_named_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NormalizationTask("cnn", SMALL, channels=CHANNELS, target="log_ratio_analytic", **kwargs)


@pytest.mark.parametrize("refit", [False, True])
def test_warm_start_keeps_the_source_standardization(tiny, tmp_path, refit):
    """A warm start on other fields predicts exactly the source model's γ before its first step: the data module
    standardizes the new fields with the loaded model's statistics. Refitting them (``refit_standardization``,
    the behaviour before) moves the prediction: the check can fail."""
    _fit(tiny, tmp_path / "a", 2)
    last = str(tmp_path / "a" / "last.ckpt")
    source, meta = load_model(last)
    other = make_tiny_dataset(tmp_path / "other", seed=5, splits={"train": 1, "val": 1, "test": 1})
    dm = NormalizationDataModule(str(other), channels=CHANNELS, target="log_ratio_analytic", patch_size=8,
                                 samples_per_epoch=8, batch_size=4)
    warm = NormalizationTask("cnn", SMALL, channels=CHANNELS, target="log_ratio_analytic", init_weights=last,
                             refit_standardization=refit)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.validate(warm, dm, verbose=False)
    trainer.save_checkpoint(tmp_path / "warm.ckpt")
    model, warm_meta = load_model(tmp_path / "warm.ckpt")
    refitted = NormalizationDataModule(str(other), channels=CHANNELS, target="log_ratio_analytic")
    refitted.setup("fit")
    expected = refitted.state_dict() if refit else {"input_transform": meta["input_transform"],
                                                     "target_transform": meta["target_transform"]}
    assert warm_meta["input_transform"] == expected["input_transform"]
    assert {k: warm_meta["target_transform"][k] for k in ("mean", "std")} == {
        k: expected["target_transform"][k] for k in ("mean", "std")}
    assert meta["target_transform"]["mean"] != refitted.target_transform.mean  # the two units do differ
    item = NormalizationDataset(str(other), "test")[0]
    grid = grid_from_fields(item)
    before = predict_gamma(source, meta, grid, item["steps"])
    after = predict_gamma(model, warm_meta, grid, item["steps"])
    ocean = grid.mask
    rel = np.abs(after[ocean] / before[ocean] - 1)
    if refit:
        assert rel.max() > 1e-3, rel.max()
    else:
        assert rel.max() < 1e-6, rel.max()


@pytest.mark.parametrize("grow", [{"filters": 12}, {"blocks": 3, "dilations": [1, 1, 1, 1, 1, 2, 2]},
                                  {"filters": 12, "blocks": 4}])
def test_warm_start_grows_a_smaller_cnn(tiny, tmp_path, grow):
    """init_weights from the same CNN with fewer filters and/or blocks: grown, same predictions at the start."""
    plain = {**SMALL, "batchnorm": False}
    _fit(tiny, tmp_path / "a", 2, model_kwargs=plain)
    last = str(tmp_path / "a" / "last.ckpt")
    big = NormalizationTask("cnn", {**plain, **grow}, channels=CHANNELS, target="log_ratio_analytic",
                            init_weights=last)
    small, meta = load_model(last)
    assert big.model.input_layer.conv.out_channels == grow.get("filters", 8) and len(big.model.blocks) == grow.get(
        "blocks", 2)
    big.model.periodic_x, big.model.periodic_y = small.periodic_x, small.periodic_y
    x = torch.randn(1, len(CHANNELS), 20, 24)
    torch.testing.assert_close(big.model.eval()(x), small.eval()(x), rtol=1e-5, atol=1e-5)


def test_warm_start_refuses_what_it_cannot_grow(tiny, tmp_path):
    plain = {**SMALL, "batchnorm": False}
    _fit(tiny, tmp_path / "a", 1, model_kwargs=plain)
    last = str(tmp_path / "a" / "last.ckpt")
    with pytest.raises(ValueError, match="dilations .* must open"):  # the trained layers' dilations changed
        NormalizationTask("cnn", {**plain, "blocks": 3, "dilations": [2, 1, 1, 1, 1, 1, 1]}, channels=CHANNELS,
                          target="log_ratio_analytic", init_weights=last)
    with pytest.raises(ValueError, match="another network"):  # fewer blocks is no growing
        NormalizationTask("cnn", {**plain, "filters": 12, "blocks": 1}, channels=CHANNELS,
                          target="log_ratio_analytic", init_weights=last)
    _fit(tiny, tmp_path / "b", 1)  # with batch norm: no growing, and an error that says so
    with pytest.raises(ValueError, match="init_weights .*growing needs"):
        NormalizationTask("cnn", {**SMALL, "filters": 12}, channels=CHANNELS, target="log_ratio_analytic",
                          init_weights=str(tmp_path / "b" / "last.ckpt"))


def test_cli_warm_restart(tiny, tmp_path):
    """The route of sphere-1deg's later stages through LightningCLI: trained weights, a new schedule with warm-up."""
    cfg = _config(tmp_path, tiny)
    r = _run_cli(["fit", "--config", str(cfg), "--trainer.max_epochs", "1"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    first = tmp_path / "runs" / "t" / "version_0" / "checkpoints" / "last.ckpt"
    r = _run_cli(["fit", "--config", str(cfg), "--trainer.max_epochs", "1", "--model.init_weights", str(first),
                  "--model.scheduler", "cosine_time", "--model.warmup_steps", "10"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    ck = torch.load(tmp_path / "runs" / "t" / "version_1" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ck["epoch"] == 0 and ck["hyper_parameters"]["init_weights"] == str(first)
    lr = ck["optimizer_states"][0]["param_groups"][0]["lr"]
    assert 0 < lr < ck["hyper_parameters"]["lr"] / 2  # still on the warm-up ramp after one epoch of 2 steps


def test_ddp_two_cpu_processes_one_epoch(tiny, tmp_path):
    """Also with the time-aware schedule, whose per-step broadcast of rank 0's clock must not deadlock."""
    cfg = _config(tmp_path, tiny)
    r = _run_cli(["fit", "--config", str(cfg), "--trainer.strategy", "ddp", "--trainer.devices", "2",
                  "--model.scheduler", "cosine_time", "--trainer.max_time", "00:00:30:00"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "runs" / "t" / "version_0" / "metrics.csv")))
    assert any(r.get("val_eps_max") for r in rows)


class _FakeTimer:
    def __init__(self, elapsed, duration):
        self.elapsed, self._duration = elapsed, duration

    def time_elapsed(self, stage="train"):
        return self.elapsed


def test_time_aware_cosine_follows_the_clock_or_the_steps():
    from diffnorm.trainers.task import TimeAwareCosine

    plain = TimeAwareCosine(100)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100, eta_min=0.01)
    for step in range(100):  # no time limit: exactly the step-based cosine
        assert plain(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
        opt.step()
        ref.step()
    assert plain(100) == pytest.approx(0.01)
    half_time = TimeAwareCosine(100, _FakeTimer(elapsed=30.0, duration=60.0))
    assert half_time(10) == pytest.approx(0.01 + 0.99 * 0.5)  # the clock is ahead of the steps: it wins
    assert half_time(80) == pytest.approx(plain(80))  # the steps are ahead
    assert TimeAwareCosine(100, _FakeTimer(elapsed=90.0, duration=60.0))(5) == pytest.approx(0.01)
    # several processes: rank 0's clock for everyone
    told = []
    synced = TimeAwareCosine(100, _FakeTimer(elapsed=6.0, duration=60.0), lambda v, src: told.append(v) or 0.5)
    assert synced(10) == pytest.approx(0.01 + 0.99 * 0.5) and told == [pytest.approx(0.1)]
    warm = TimeAwareCosine(100, warmup_steps=10)  # linear ramp to the cosine, then the cosine itself
    assert [warm(s) for s in (0, 4, 9)] == pytest.approx([0.1 * plain(0), 0.5 * plain(4), plain(9)])
    assert [warm(s) for s in range(10, 100)] == [plain(s) for s in range(10, 100)]


def test_time_aware_cosine_trains_and_its_checkpoint_loads_weights_only(tiny, tmp_path):
    task, trainer = _fit(tiny, tmp_path, 2, task_kw={"scheduler": "cosine_time"},
                         trainer_kw={"max_time": {"hours": 1}})
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert 0 < lr < 3e-3
    ck = torch.load(tmp_path / "last.ckpt", weights_only=True)  # no Timer object pickled with the schedule
    assert ck["lr_schedulers"] and "time_elapsed" in str(ck["callbacks"])
    _fit(tiny, tmp_path / "resumed", 3, ckpt_path=str(tmp_path / "last.ckpt"), task_kw={"scheduler": "cosine_time"},
         trainer_kw={"max_time": {"hours": 1}})


@pytest.mark.parametrize("augment,patch", [(True, 8), (["identity", "rot90", "transpose", "rot270", "antitranspose",
                                                        "flip_x", "flip_y", "rot180"], 8), (True, 11)])
def test_patches_from_transformed_fields_equal_transformed_windows(tiny, augment, patch):
    """The cached slices (in the DataLoader, and gathered by address as on a GPU) against the per-window path
    (crop the raw window, transform it, standardize)."""
    channels = CHANNELS + ["area_ratio_x", "area_ratio_y"]  # odd face channels: negated on flips along their axis
    dms = [NormalizationDataModule(str(tiny), channels=channels, target="log_ratio_images", patch_size=patch,
                                   samples_per_epoch=40, batch_size=4, augment=augment, margin=3, cache_patches=c,
                                   patches_on_device=d)
           for c, d in ((True, False), (False, False), (True, True))]
    for dm in dms:
        dm.setup("fit")
    ds, ref, by_address = (dm.train_dataloader().dataset for dm in dms)
    assert ds.cache and not ref.cache and by_address.on_device
    seen = set()
    for epoch in (0, 1):
        ds.epoch = ref.epoch = by_address.epoch = epoch
        for i in range(len(ds)):
            item, expected = ds[i], ref[i]
            gathered = by_address.gather(by_address[i]["patch"][None])
            assert item["x"].shape == (len(channels), patch + 6, patch + 6)
            for key in ("x", "y", "mask"):
                np.testing.assert_array_equal(item[key].numpy(), expected[key].numpy())
                np.testing.assert_array_equal(gathered[key][0].numpy(), expected[key].numpy())
        seen |= {t for (_, t) in ds._ready}
    assert not ref._ready
    assert len(seen) == (8 if isinstance(augment, list) else 4)  # every transform was drawn and checked


def test_padded_field_holds_its_raw_channels_once(tiny):
    """After padding, a field's raw channels are views of the padded copy's interior, with the same values."""
    dm = NormalizationDataModule(str(tiny), channels=CHANNELS, target="log_ratio_images", patch_size=8,
                                 samples_per_epoch=8, batch_size=4, margin=3, cache_patches=False)
    dm.setup("fit")
    f = dm.train_dataloader().dataset.fields[0]
    x0, v0 = f.x.copy(), f.valid.copy()
    px, pv = f.padded(4)
    np.testing.assert_array_equal(f.x, x0)
    np.testing.assert_array_equal(f.valid, v0)
    assert np.shares_memory(f.x, px) and np.shares_memory(f.valid, pv)
    np.testing.assert_array_equal(px[:, 4:-4, 4:-4], x0)
    assert f.padded(4)[0] is px
    px2, pv2 = f.padded(2)  # another margin pads the same values
    np.testing.assert_array_equal(px2[:, 2:-2, 2:-2], x0)
    np.testing.assert_array_equal(pv2[:, 2:-2, 2:-2], v0)


def test_field_holds_raw_channels_in_float32(tiny):
    """A training field's raw channels are float32 copies of the float64 ones; standardized, they agree to 1e-6."""
    dm = NormalizationDataModule(str(tiny), channels=CHANNELS, target="log_ratio_images", patch_size=8,
                                 samples_per_epoch=8, batch_size=4, margin=3, cache_patches=False)
    dm.setup("fit")
    f = dm.fields["train"][0]
    item = NormalizationDataset(str(tiny), "train")[0]
    grid = grid_from_fields(item)
    raw64, valid = dm.input_transform.raw(grid, f.steps, dm.target_transform.prior(grid, f.steps))
    assert f.x.dtype == np.float32 and raw64.dtype == np.float64
    np.testing.assert_array_equal(f.valid, valid)
    np.testing.assert_allclose(f.x, raw64, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(dm.input_transform.apply(f.x, f.valid), dm.input_transform.apply(raw64, valid),
                               rtol=0, atol=1e-6)


ALL_TRANSFORMS = ["identity", "rot90", "transpose", "rot270", "antitranspose", "flip_x", "flip_y", "rot180"]


def _global_patches(root, wrap, patch_size=16, **kw):
    channels = CHANNELS + ["area_ratio_x", "area_ratio_y"]
    dm = NormalizationDataModule(str(root), channels=channels, target="log_ratio_images", patch_size=patch_size,
                                 samples_per_epoch=64, batch_size=4, augment=ALL_TRANSFORMS, margin=3,
                                 wrap_patches=wrap, **kw)
    dm.setup("fit")
    return dm.train_dataloader().dataset


def test_wrapped_patches_equal_transformed_windows_on_a_periodic_grid(tiny_global):
    """Windows that wrap across the seam: cached slices, per-window crops and on-device gathers agree."""
    ds, ref, by_address = (_global_patches(tiny_global, True, cache_patches=c, patches_on_device=d)
                           for c, d in ((True, False), (False, False), (True, True)))
    nx = ds.fields[0].shape[1]
    wrapped = 0
    for epoch in range(3):
        ds.epoch = ref.epoch = by_address.epoch = epoch
        for i in range(len(ds)):
            k, t, j0, i0, ph, pw = ds.locate(i)
            wrapped += i0 + pw > nx
            item, expected = ds[i], ref[i]
            gathered = by_address.gather(by_address[i]["patch"][None])
            assert item["x"].shape == (7, 22, 22)
            for key in ("x", "y", "mask"):
                np.testing.assert_array_equal(item[key].numpy(), expected[key].numpy())
                np.testing.assert_array_equal(gathered[key][0].numpy(), expected[key].numpy())
    assert wrapped > 20  # 20 of the 36 origins wrap: many windows crossed the seam, under every transform


@pytest.mark.parametrize("transform", ["identity", "flip_x", "rot180", "transpose", "rot90"])
def test_a_wrapped_patch_is_the_patch_of_the_rolled_field(tiny_global, transform):
    """Brute force: the field rolled along its periodic axis so that the window no longer wraps."""
    from diffnorm.datamodules.normalization import Field, PatchDataset
    from diffnorm.datasets import NormalizationDataset

    ds = _global_patches(tiny_global, True)
    shift = 29  # of 36 columns: the window covers columns 29..35 and 0..8
    item = dict(NormalizationDataset(str(tiny_global), "train")[0])
    for name in ("diff_x", "diff_y", "area", "mask", "gamma", "lat", "lon"):
        item[name] = np.roll(np.asarray(item[name]), -shift, axis=-1)
    rolled = PatchDataset([Field(item, ds.input_tf, ds.target_tf)], ds.input_tf, ds.target_tf, 16, 3, 1,
                          ds.augment, wrap=True)
    got = ds.patch_at(0, transform, 1, shift, 16, 16)
    want = rolled.patch_at(0, transform, 1, 0, 16, 16)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert got[2].any()  # ocean in the window


def test_wrapped_patches_sample_every_column_alike(tiny_global):
    """Along the periodic axis, coverage is uniform with wrapping; without it the seam's columns starve."""
    def coverage(ds):
        hits = np.zeros(ds.fields[0].shape[1])
        for epoch in range(40):
            ds.epoch = epoch
            for i in range(len(ds)):
                _, _, _, i0, _, pw = ds.locate(i)
                hits[(i0 + np.arange(pw)) % hits.size] += 1
        return hits / hits.mean()

    wrapped, inside = coverage(_global_patches(tiny_global, True)), coverage(_global_patches(tiny_global, False))
    assert wrapped.min() > 0.9 and wrapped.max() < 1.1
    assert inside[0] < 0.15 and inside[18] > 1.4  # column 0 only when the window starts there: 1 of 21 origins


def test_full_height_patches_sample_every_cell_alike(tiny_global):
    """Patches of [rows, columns] as tall as the field: every row and (wrapping) every column covered alike;
    transposes, which would change the patch shape, are never drawn; all three patch paths agree."""
    ds, ref, by_address = (_global_patches(tiny_global, True, patch_size=[18, 9], cache_patches=c, patches_on_device=d)
                           for c, d in ((True, False), (False, False), (True, True)))
    ny, nx = ds.fields[0].shape
    rows, cols, drawn = np.zeros(ny), np.zeros(nx), set()
    for epoch in range(20):
        ds.epoch = ref.epoch = by_address.epoch = epoch
        for i in range(len(ds)):
            k, t, j0, i0, ph, pw = ds.locate(i)
            assert (j0, ph, pw) == (0, 18, 9)
            rows[np.arange(ph)] += 1
            cols[(i0 + np.arange(pw)) % nx] += 1
            drawn.add(t)
            if epoch < 2:
                item, expected = ds[i], ref[i]
                gathered = by_address.gather(by_address[i]["patch"][None])
                assert item["x"].shape == (7, 24, 15) and item["y"].shape == (1, 18, 9)
                for key in ("x", "y", "mask"):
                    np.testing.assert_array_equal(item[key].numpy(), expected[key].numpy())
                    np.testing.assert_array_equal(gathered[key][0].numpy(), expected[key].numpy())
    assert np.all(rows == rows[0])
    cols /= cols.mean()
    assert cols.min() > 0.9 and cols.max() < 1.1
    assert drawn == {"identity", "flip_x", "flip_y", "rot180"}
    square = _global_patches(tiny_global, True)  # 16 of 18 rows: the end rows are covered by fewer origins
    assert square.patch == (16, 16)
    for bad in ([16], [0, 8], [16, 8, 2], 2.5, [True, 4]):
        with pytest.raises(ValueError, match="patch_size"):
            NormalizationDataModule(str(tiny_global), patch_size=bad)


def test_patches_on_device_train_to_the_same_weights(tiny, tmp_path):
    """The DataLoader yields addresses, the data module slices the batch after the transfer: same training."""
    plain, _ = _fit(tiny, tmp_path / "plain", 2)
    on_device, trainer = _fit(tiny, tmp_path / "device", 2, patches_on_device=True)
    assert trainer.train_dataloader.num_workers == 0
    for k, v in plain.model.state_dict().items():
        assert torch.equal(v, on_device.model.state_dict()[k]), k
    with pytest.raises(ValueError, match="cache_patches"):
        NormalizationDataModule(str(tiny), patches_on_device=True, cache_patches=False)


@pytest.mark.parametrize("config", sorted(p.name for p in (Path(__file__).parents[1] / "configs").glob("*.yaml")
                                          if p.name not in ("dataset-study.yaml", "widen48.yaml")
                                          and not p.name.startswith("fields")))
def test_shipped_training_configs_build(config, tmp_path, monkeypatch):
    """Every training config in configs/ parses and builds its model, data module and trainer (no data read)."""
    from diffnorm.trainers.cli import cli_main

    monkeypatch.chdir(tmp_path)  # loggers create their folders here
    cli = cli_main(["--config", str(Path(__file__).parents[1] / "configs" / config), "--trainer.accelerator", "cpu"],
                   run=False)
    assert isinstance(cli.model, NormalizationTask) and isinstance(cli.datamodule, NormalizationDataModule)
    assert cli.model.hparams.channels == cli.datamodule.channels
    assert sum(p.numel() for p in cli.model.parameters()) > 0


def test_widening_overlay_config(tmp_path, monkeypatch):
    """configs/widen48.yaml over best.yaml: the same CNN, 48 filters (sphere-1deg's eighth stage)."""
    from diffnorm.trainers.cli import cli_main

    monkeypatch.chdir(tmp_path)
    configs = Path(__file__).parents[1] / "configs"
    base = cli_main(["--config", str(configs / "best.yaml"), "--trainer.accelerator", "cpu"], run=False)
    wide = cli_main(["--config", str(configs / "best.yaml"), "--config", str(configs / "widen48.yaml"),
                     "--trainer.accelerator", "cpu"], run=False)
    assert wide.model.model_kwargs == {**base.model.model_kwargs, "filters": 48}
    assert sum(p.numel() for p in wide.model.parameters()) == 169_345


@pytest.mark.parametrize("overlay, smaller, dirs", [("fields712.yaml", [], 46),
                                                    ("fields1262.yaml", ["fields712.yaml"], 55),
                                                    ("fields1762.yaml", ["fields1262.yaml"], 63),
                                                    ("fields1502.yaml", ["fields1262.yaml"], 61)])
def test_fields_overlay_config(overlay, smaller, dirs, tmp_path, monkeypatch):
    """configs/fields*.yaml over best.yaml: the smaller set's training dirs first, in order, then the newer ones; no
    duplicate, none of them a test or robustness set, and the README says how to generate each one."""
    from diffnorm.trainers.cli import cli_main

    monkeypatch.chdir(tmp_path)
    root = Path(__file__).parents[1]
    configs = root / "configs"
    over = [arg for name in smaller for arg in ("--config", str(configs / name))]
    base = cli_main(["--config", str(configs / "best.yaml"), *over, "--trainer.accelerator", "cpu"], run=False)
    more = cli_main(["--config", str(configs / "best.yaml"), "--config", str(configs / overlay),
                     "--trainer.accelerator", "cpu"], run=False)
    old, new = list(base.datamodule.data_dirs), list(more.datamodule.data_dirs)
    assert new[:len(old)] == old and len(new) == len(set(new)) == dirs
    assert more.model.model_kwargs == base.model.model_kwargs
    readme = (root / "README.md").read_text()
    for d in new:
        assert not Path(d).name.startswith(("te-", "ood-", "ho-")), d
        assert f"-o {d}\n" in readme or f"-o {d} " in readme, f"README has no command generating {d}"


def test_model_kwargs_from_the_command_line_are_typed(tmp_path, monkeypatch):
    """``--model.model_kwargs.filters 64`` arrives as the string "64": it must build 64 filters, not fail in Conv2d."""
    from diffnorm.trainers.cli import cli_main

    monkeypatch.chdir(tmp_path)
    configs = Path(__file__).parents[1] / "configs"
    cli = cli_main(["--config", str(configs / "best.yaml"), "--trainer.accelerator", "cpu",
                    "--model.model_kwargs.filters", "64", "--model.model_kwargs.dilations", "[1, 2, 1]",
                    "--model.model_kwargs.blocks", "1", "--model.model_kwargs.batchnorm", "false"], run=False)
    kw = cli.model.model_kwargs
    assert kw["filters"] == 64 and kw["blocks"] == 1 and kw["dilations"] == [1, 2, 1] and kw["batchnorm"] is False
    assert kw["activation"] == "relu" and kw["skip"] == "v2"  # words stay words
    first = next(cli.model.model.parameters())
    assert first.shape[0] == 64


@pytest.mark.parametrize("has_bf16, fallback, expected", [(False, None, "32-true"), (False, "false", "bf16-mixed"),
                                                          (True, None, "bf16-mixed")])
def test_bf16_falls_back_to_float32_on_cpus_without_bf16_units(has_bf16, fallback, expected, tmp_path, monkeypatch):
    """configs/best.yaml asks for bf16-mixed: on a CPU that would emulate bf16 the trainer gets 32-true and a warning
    that says why and how to keep bf16; with --precision_fallback false, or on a CPU with bf16 units, bf16 stays."""
    from diffnorm.trainers import cli as train_cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train_cli, "cpu_has_bf16", lambda: has_bf16)
    args = ["--config", str(Path(__file__).parents[1] / "configs" / "best.yaml"), "--trainer.accelerator", "cpu"]
    args += ["--precision_fallback", fallback] if fallback else []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = train_cli.cli_main(args, run=False)
    assert cli.trainer.precision == expected
    said = [str(w.message) for w in caught if "no bf16 units" in str(w.message)]
    assert len(said) == (expected == "32-true")
    if said:
        assert "bf16-mixed" in said[0] and "--precision_fallback false" in said[0] and "best-fast.yaml" in said[0]


def test_precision_fallback_only_on_the_cpu(monkeypatch):
    """A GPU run keeps its bf16; "auto" means the CPU only when there is no GPU."""
    from diffnorm.trainers.cli import _runs_on_cpu, cpu_has_bf16

    assert isinstance(cpu_has_bf16(), bool)
    assert _runs_on_cpu("cpu") and _runs_on_cpu("CPU")
    assert not _runs_on_cpu("gpu") and not _runs_on_cpu("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert not _runs_on_cpu("auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert _runs_on_cpu("auto") and _runs_on_cpu(None)


def test_field_draw_overlay_configs(tmp_path, monkeypatch):
    """configs/fields-draw2.yaml to fields-draw9.yaml: new draws of fields1502.yaml's training sets (same
    generators, other seeds) under data/draw2/ to data/draw9/; each later draw lists the one before's sets first
    (fields-draw9.yaml: the eighth and ninth), and the README has the one-liner that generates each draw."""
    from diffnorm.trainers.cli import cli_main

    monkeypatch.chdir(tmp_path)
    root = Path(__file__).parents[1]
    configs = root / "configs"

    def dirs(*overlays: str) -> list[str]:
        over = [arg for name in overlays for arg in ("--config", str(configs / name))]
        cli = cli_main(["--config", str(configs / "best.yaml"), *over, "--trainer.accelerator", "cpu"], run=False)
        return list(cli.datamodule.data_dirs)

    first = dirs("fields1502.yaml")
    draw2 = dirs("fields-draw2.yaml")
    assert draw2 == [d.replace("data/", "data/draw2/", 1) for d in first if "/tr9-" not in d]
    previous = draw2
    for n in (3, 4, 5, 6, 7):  # each later draw lists the one before's own sets, then its own
        latest = [d for d in previous if d.startswith(f"data/draw{n - 1}/")]
        draw = dirs(f"fields-draw{n}.yaml")
        assert draw == latest + [d.replace(f"data/draw{n - 1}/", f"data/draw{n}/", 1) for d in latest]
        assert len(set(draw)) == len(draw) == 122
        previous = draw
    # the thirty-second stage: an eighth and a ninth draw, both fresh (no fields-draw8.yaml)
    eighth = [d.replace("data/draw7/", "data/draw8/", 1) for d in previous if d.startswith("data/draw7/")]
    assert dirs("fields-draw9.yaml") == eighth + [d.replace("data/draw8/", "data/draw9/", 1) for d in eighth]
    readme = (root / "README.md").read_text()
    for n in range(2, 10):  # draw n: every seed + 1000 (n - 1)
        offset, folder = 1000 * (n - 1), f"draw{n}"
        assert f"--seed $((\\1 + {offset}))/' -e 's#-o data/tr#-o data/{folder}/tr#'" in readme, folder
