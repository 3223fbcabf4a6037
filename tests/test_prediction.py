"""``diffnorm predict``: output equals the network's forward pass; mismatched grids fail loudly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffnorm.cli import main
from diffnorm.families import coast_geometry
from diffnorm.features import compute_features
from diffnorm.generators import generate_grid
from diffnorm.grid import read_grid
from diffnorm.io import read_gamma
from diffnorm.normalization import analytic_normalization
from diffnorm.prediction import ModelMismatchError, Predictor, check_input_range, load_model, output_paths, save_bundle
from diffnorm.transforms import Standardizer
from tests.conftest import TinyNet

CHANNELS = ["mask", "area", "diff_x", "diff_y", "distance_euclidean", "analytic"]


def make_grids(n=3, seed0=0):
    geo, ocean = coast_geometry((30, 42), (-80, -62), 1.0)
    return [generate_grid(geo, ocean, "isotropic", {"min_length": 1.0, "max_length": 3.0}, seed=seed0 + k, steps=10)
            for k in range(n)]


def make_bundle(grids, target="log_ratio_analytic"):
    torch.manual_seed(0)
    model = TinyNet(len(CHANNELS), "tanh").eval()
    x = np.stack([np.stack([compute_features(g, 10, CHANNELS)[c] for c in CHANNELS]) for g in grids])
    std = Standardizer("partial", CHANNELS).fit(x, np.stack([g.mask for g in grids]))
    meta = {"channels": CHANNELS, "steps": 10, "standardizer": std.to_dict(), "target": target,
            "target_mean": 0.01, "target_std": 0.05, "periodic_x": False, "periodic_y": False}
    return model, meta


def manual_gamma(model, meta, grid):
    """The documented pipeline by hand: features → standardize → forward → de-standardize → γ."""
    std = Standardizer.from_dict(meta["standardizer"])
    feats = compute_features(grid, meta["steps"], meta["channels"])
    x = std.transform(np.stack([feats[c] for c in meta["channels"]]), grid.mask).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)[None])[0, 0].double().numpy()
    y = y * meta["target_std"] + meta["target_mean"]
    return np.where(grid.mask, analytic_normalization(grid, meta["steps"]) * np.exp(y), np.nan)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("pred")
    grids = make_grids(3)
    model, meta = make_bundle(grids)
    save_bundle(model, meta, d / "tiny.pt")
    files = []
    for k, g in enumerate(grids):
        g.to_netcdf(d / f"g{k}.nc")
        files.append(d / f"g{k}.nc")
    return d, model, meta, files


def test_predict_one_file_equals_forward(setup, tmp_path):
    d, model, meta, files = setup
    out = tmp_path / "gamma.nc"
    assert main(["predict", str(d / "tiny.pt"), str(files[0]), "-o", str(out)]) == 0
    gamma = read_gamma(out)
    grid = read_grid(files[0])
    ref = manual_gamma(model, meta, grid)
    assert np.array_equal(np.isnan(gamma), ~grid.mask)
    np.testing.assert_allclose(gamma[grid.mask], ref[grid.mask], rtol=1e-6)
    import xarray as xr

    with xr.open_dataset(out) as ds:
        assert ds["gamma"].attrs["method"] == "cnn" and int(ds["gamma"].attrs["steps"]) == 10


def test_predict_many_files_batched_into_directory(setup, tmp_path):
    d, model, meta, files = setup
    assert main(["predict", str(d / "tiny.pt"), *map(str, files), "-o", str(tmp_path / "out"),
                 "--batch-size", "2", "--steps", "10", "--threads", "1"]) == 0
    for f in files:
        gamma = read_gamma(tmp_path / "out" / f.name)
        grid = read_grid(f)
        np.testing.assert_allclose(gamma[grid.mask], manual_gamma(model, meta, grid)[grid.mask], rtol=1e-6)


@pytest.mark.parametrize("target", ["gamma", "gamma2", "inv_gamma", "log_gamma"])
def test_targets_decode(target):
    grids = make_grids(1)
    model, meta = make_bundle(grids, target)
    meta["target_mean"] = {"gamma": 30.0, "gamma2": 900.0, "inv_gamma": 0.03, "log_gamma": 3.4}[target]
    meta["target_std"] = 1e-3 * abs(meta["target_mean"])
    p = Predictor(model, meta)
    gamma = p.predict_grid(grids[0])
    x = p.inputs(grids[0], 10)
    with torch.no_grad():
        y = model(torch.from_numpy(x)[None])[0, 0].double().numpy() * meta["target_std"] + meta["target_mean"]
    expect = {"gamma": lambda: y, "gamma2": lambda: np.sqrt(y), "inv_gamma": lambda: 1 / y,
              "log_gamma": lambda: np.exp(y)}[target]()
    np.testing.assert_allclose(gamma[grids[0].mask], expect[grids[0].mask], rtol=1e-6)


def test_mismatches_raise_clear_errors(setup, tmp_path, capsys):
    d, model, meta, files = setup
    p = Predictor(*load_model(d / "tiny.pt"))
    grid = read_grid(files[0])
    with pytest.raises(ModelMismatchError, match="trained for M = 10"):
        p.predict_grid(grid, steps=4)
    assert main(["predict", str(d / "tiny.pt"), str(files[0]), "--steps", "8", "-o", str(tmp_path / "x.nc")]) == 1
    assert "trained for M = 10" in capsys.readouterr().err and not (tmp_path / "x.nc").exists()
    # the grid's own steps attribute disagrees with the model
    other = grid.with_diffusivity(grid.diff_x, grid.diff_y)
    other.attrs["steps"] = 6
    with pytest.raises(ModelMismatchError, match="M = 6"):
        p.predict_grid(other)
    # periodicity the padding was not trained for
    per = type(grid)(grid.mask, grid.area, grid.diff_x, grid.diff_y, True, False)
    with pytest.raises(ModelMismatchError, match="periodic_x"):
        p.predict_grid(per)
    # wrong units: diffusivities 1e6 times too large are far outside the training range
    wrong = grid.with_diffusivity(grid.diff_x * 1e6, grid.diff_y * 1e6)
    with pytest.raises(ModelMismatchError, match="standard deviations"):
        p.predict_grid(wrong)
    # inconsistent meta data: channels vs network, unknown channel, shape constraint
    with pytest.raises(ModelMismatchError, match="input channels"):
        Predictor(model, {**meta, "channels": CHANNELS[:3], "standardizer": None})
    with pytest.raises(ModelMismatchError, match="unknown"):
        Predictor(model, {**meta, "channels": CHANNELS[:5] + ["vorticity"], "standardizer": None}).predict_grid(grid)
    with pytest.raises(ModelMismatchError, match="divisible by 8"):
        Predictor(model, {**meta, "shape_multiple": 8}).predict_grid(grid)


def test_missing_model_and_output_paths(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nope.pt"), "x.nc", "-o", str(tmp_path / "o.nc")]) == 1
    assert "no such model" in capsys.readouterr().err
    assert output_paths(["a/g.nc"], tmp_path / "one.nc") == [tmp_path / "one.nc"]
    d = tmp_path / "dir"
    assert output_paths(["a/g.nc", "b/h.nc"], d) == [d / "g.nc", d / "h.nc"]
    with pytest.raises(ValueError, match="overwrite"):
        output_paths(["a/g.nc", "b/g.nc"], tmp_path / "dir")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_gpu_matches_cpu(setup):
    d, model, meta, files = setup
    grid = read_grid(files[0])
    cpu = Predictor(*load_model(d / "tiny.pt"), device="cpu").predict_grid(grid)
    gpu = Predictor(*load_model(d / "tiny.pt"), device="cuda").predict_grid(grid)
    np.testing.assert_allclose(gpu[grid.mask], cpu[grid.mask], rtol=1e-5)


def test_onnxruntime_backend_matches_torch(setup, tmp_path):
    d, model, meta, files = setup
    assert main(["predict", str(d / "tiny.pt"), str(files[1]), "--backend", "onnxruntime",
                 "-o", str(tmp_path / "ort.nc")]) == 0
    grid = read_grid(files[1])
    np.testing.assert_allclose(read_gamma(tmp_path / "ort.nc")[grid.mask], manual_gamma(model, meta, grid)[grid.mask],
                               rtol=1e-6)


def test_bf16_precision_predicts_close_to_float32_and_refuses_onnx(setup, tmp_path, capsys):
    """``--precision bf16``: the hidden layers in bfloat16, γ within bf16 rounding of the float32 prediction (not
    equal to it); the ONNX backend (float32) refuses it by name."""
    d, model, meta, files = setup
    assert main(["predict", str(d / "tiny.pt"), str(files[0]), "--precision", "bf16",
                 "-o", str(tmp_path / "b.nc")]) == 0
    grid = read_grid(files[0])
    g16, ref = read_gamma(tmp_path / "b.nc")[grid.mask], manual_gamma(model, meta, grid)[grid.mask]
    assert not np.array_equal(g16, ref)
    np.testing.assert_allclose(g16, ref, rtol=3e-2)
    with pytest.raises(ValueError, match="precision bf16 needs backend 'torch'"):
        Predictor.load(d / "tiny.pt", backend="onnxruntime", precision="bf16")
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        Predictor.load(d / "tiny.pt", precision="fp8")


def _with_cell_flipped(grid, j: int, i: int):
    """The same grid with cell (j, i) turned from ocean to land or back: a new geometry for the caches."""
    mask = grid.mask.copy()
    mask[j, i] = ~mask[j, i]
    return type(grid)(mask, grid.area, grid.diff_x, grid.diff_y, grid.periodic_x, grid.periodic_y)


def test_geometry_cache_follows_the_mask():
    grids = make_grids(1)
    model, meta = make_bundle(grids)
    p = Predictor(model, meta)
    g = grids[0]
    g2 = _with_cell_flipped(g, 5, 5)
    for grid in (g, g2, g):
        fresh = Predictor(model, meta).inputs(grid, 10)
        np.testing.assert_array_equal(p.inputs(grid, 10), fresh)


def _training_bundle(grids, periodic_x=False, exact_small=0, target="log_ratio_analytic"):
    models = pytest.importorskip("diffnorm.models")
    from diffnorm.transforms.inputs import InputTransform
    from diffnorm.transforms.targets import TargetTransform, analytic_prior

    channels = ["mask", "distance", "sf_diff_x", "sf_diff_y", "analytic_sf"]
    it = InputTransform(channels).fit([InputTransform(channels).raw(g, 10) for g in grids])
    tt = TargetTransform(target, 0.05, 0.1, **({"exact_small": exact_small} if exact_small else {}))
    torch.manual_seed(0)
    model = models.build_model("cnn", in_channels=len(channels), filters=8, blocks=1, skip="v2", padding="valid",
                               periodic_x=periodic_x).eval()
    # the meta data of diffnorm.pretrained.load_model (flat target keys)
    meta = {"channels": channels, "input_transform": it.to_dict(), "target": tt.kind, "target_mean": tt.mean,
            "target_std": tt.std, "steps": 10, "periodic_x": periodic_x, "periodic_y": False, "standardizer": None}
    if exact_small:
        meta["target_transform"] = tt.to_dict()

    def manual(grid):
        prior = tt.prior(grid, 10) if exact_small or target != "log_ratio_analytic" else analytic_prior(grid, 10)
        model.periodic_x, model.periodic_y = grid.periodic_x, grid.periodic_y
        with torch.no_grad():
            y = model(torch.from_numpy(it(grid, 10, prior))[None])[0, 0].double().numpy()
        gamma = tt.inverse(y, grid.mask, prior)
        return np.where(tt.fixed(grid), prior, gamma) if exact_small else gamma

    return model, meta, manual


@pytest.mark.parametrize("has_bf16", [False, True])
def test_bf16_on_a_cpu_without_bf16_units_warns(monkeypatch, has_bf16):
    """bf16 asked on a CPU that would emulate it: a warning that it is slower than float32, from a Predictor and
    from the training code's predict_gamma (none for float32, or where the CPU has bf16 units); the prediction
    still runs in the precision asked."""
    import warnings

    from diffnorm.models import inference
    from diffnorm.pretrained import predict_gamma

    grids = make_grids(1)
    model, meta, _ = _training_bundle(grids)
    monkeypatch.setattr(inference, "cpu_has_bf16", lambda: has_bf16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p16 = Predictor(model, meta, precision="bf16")
        Predictor(model, meta)
        g16 = predict_gamma(model, meta, grids[0], precision="bf16")
        predict_gamma(model, meta, grids[0])
    said = [str(w.message) for w in caught if "no bf16 units" in str(w.message)]
    assert len(said) == 2 * (not has_bf16) and p16.precision == "bf16"
    assert np.isfinite(g16[grids[0].mask]).all()


def test_training_code_models_and_transforms():
    grids = make_grids(2)
    model, meta, manual = _training_bundle(grids)
    p = Predictor(model, meta)
    assert p.transforms and p.channels[1] == "distance"
    gammas = p.predict(grids, batch_size=2)
    pretrained = pytest.importorskip("diffnorm.pretrained")
    for g, gamma in zip(grids, gammas, strict=True):
        np.testing.assert_allclose(gamma[g.mask], manual(g)[g.mask], rtol=1e-6)
        # the training code's own one-grid path gives the same γ
        np.testing.assert_allclose(gamma[g.mask], pretrained.predict_gamma(model, meta, g)[g.mask], rtol=1e-6)
    # the network pads by the grid's periodicity (walls here, periodic there): no silent wrong padding
    per = type(grids[0])(grids[0].mask, grids[0].area, grids[0].diff_x, grids[0].diff_y, True, False)
    np.testing.assert_allclose(p.predict_grid(per)[per.mask], manual(per)[per.mask], rtol=1e-6)
    # scripted/exported copies cannot change their padding: a periodicity mismatch is an error there
    model.periodic_x = False
    p_ort = Predictor(model, meta, backend="onnxruntime")
    np.testing.assert_allclose(p_ort.predict_grid(grids[1])[grids[1].mask], manual(grids[1])[grids[1].mask],
                               rtol=1e-5)
    with pytest.raises(ModelMismatchError, match="periodic_x"):
        p_ort.predict_grid(per)
    with pytest.raises(ModelMismatchError, match="standard deviations"):
        p.predict_grid(grids[0].with_diffusivity(grids[0].diff_x * 1e8, grids[0].diff_y))


def test_images_prior_target_predicts_like_the_training_code():
    """The lattice-with-coast-images prior: the prediction decodes with that prior, not the analytic one."""
    grids = make_grids(2)
    model, meta, manual = _training_bundle(grids, target="log_ratio_images")
    pretrained = pytest.importorskip("diffnorm.pretrained")
    for g, gamma in zip(grids, Predictor(model, meta).predict(grids, batch_size=2), strict=True):
        np.testing.assert_allclose(gamma[g.mask], manual(g)[g.mask], rtol=1e-6)
        np.testing.assert_allclose(gamma[g.mask], pretrained.predict_gamma(model, meta, g)[g.mask], rtol=1e-6)


def test_training_inputs_cache_equals_input_transform():
    grids = make_grids(1)
    model, meta, _ = _training_bundle(grids)
    from diffnorm.transforms.inputs import InputTransform

    it = InputTransform.from_dict(meta["input_transform"])
    p = Predictor(model, meta)
    g = grids[0]
    g2 = _with_cell_flipped(g, 4, 7)
    for grid in (g, g2, g):
        np.testing.assert_array_equal(p.inputs(grid, 10), it(grid, 10, p._prior(grid, 10)))


def _with_isolated_cell(g):
    """``g`` with land around (2, 2), which stays ocean: a one-cell component at a known place."""
    mask = g.mask.copy()
    mask[1:4, 1:4] = False
    mask[2, 2] = True
    return type(g)(mask, g.area, g.diff_x, g.diff_y)


def test_training_code_exact_small_components():
    """Cells of small ocean components get the exact γ (the training code's ``exact_small``), like predict_gamma."""
    from diffnorm.transforms.targets import TargetTransform

    if "exact_small" not in TargetTransform().to_dict():
        pytest.skip("training code without exact_small")
    pretrained = pytest.importorskip("diffnorm.pretrained")
    grids = make_grids(2)
    lake = _with_isolated_cell(grids[0])
    model, meta, manual = _training_bundle(grids, exact_small=4)
    p = Predictor(model, meta)
    gamma = p.predict_grid(lake)
    np.testing.assert_allclose(gamma[lake.mask], manual(lake)[lake.mask], rtol=1e-6)
    np.testing.assert_allclose(gamma[lake.mask], pretrained.predict_gamma(model, meta, lake)[lake.mask], rtol=1e-6)
    from diffnorm.normalization import bruteforce_normalization

    assert gamma[2, 2] == pytest.approx(bruteforce_normalization(lake, 10)[2, 2], rel=1e-8)


def test_exact_small_override():
    """``exact_small`` given at prediction replaces the model's: as large as the ocean, every cell gets the exact γ
    (against brute force); 0 hands the isolated cell back to the network; the model's meta data is not changed;
    bad values are named."""
    pretrained = pytest.importorskip("diffnorm.pretrained")
    from diffnorm.normalization import bruteforce_normalization

    grids = make_grids(2)
    lake = _with_isolated_cell(grids[0])
    model, meta, _ = _training_bundle(grids, exact_small=4)
    exact = bruteforce_normalization(lake, 10)
    everything = int(lake.mask.sum())
    for gamma in (Predictor(model, meta, exact_small=everything).predict_grid(lake),
                  pretrained.predict_gamma(model, meta, lake, exact_small=everything)):
        np.testing.assert_allclose(gamma[lake.mask], exact[lake.mask], rtol=1e-8)
    with pytest.warns(UserWarning, match="below the 4 the model was trained with"):
        off = Predictor(model, meta, exact_small=0)
    assert off.meta["target_transform"]["exact_small"] == 0 and meta["target_transform"]["exact_small"] == 4
    g0 = off.predict_grid(lake)
    assert abs(g0[2, 2] / exact[2, 2] - 1) > 1e-3  # the network's guess, not the exact value
    with pytest.warns(UserWarning, match="components of 1-4 cells"):
        g1 = pretrained.predict_gamma(model, meta, lake, exact_small=0)
    np.testing.assert_allclose(g0[lake.mask], g1[lake.mask], rtol=1e-6)
    # a shipped model records what it was trained with apart from what it predicts with
    with pytest.warns(UserWarning, match="below the 6"):
        Predictor(model, {**meta, "training": {"exact_small": 6}}, exact_small=5)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Predictor(model, meta, exact_small=4)
        Predictor(model, {**meta, "training": {"exact_small": 6}}, exact_small=100)
    assert Predictor(model, meta).predict_grid(lake)[2, 2] == pytest.approx(exact[2, 2], rel=1e-8)
    for bad in (-1, 2.5, True, "10"):
        with pytest.raises(ValueError, match="exact_small"):
            Predictor(model, meta, exact_small=bad)
        with pytest.raises(ValueError, match="exact_small"):
            pretrained.predict_gamma(model, meta, lake, exact_small=bad)


@pytest.mark.parametrize("periodic_x", [False, True])
def test_test_time_augmentation_is_the_mean_over_flipped_grids(periodic_x):
    """TTA by hand: predict each flipped grid alone, flip γ back, geometric mean (the network's output is
    ln γ up to the equivariant prior); the exact small components stay exact. Predictor and predict_gamma agree."""
    from diffnorm.transforms.augmentation import FLIPS, augment_cell_field, augment_grid

    grids = make_grids(2)
    if periodic_x:
        grids = [type(g)(g.mask, g.area, g.diff_x, g.diff_y, True, False) for g in grids]
    model, meta, _ = _training_bundle(grids, periodic_x=periodic_x, exact_small=5, target="log_ratio_images")
    pretrained = pytest.importorskip("diffnorm.pretrained")
    plain = Predictor(model, meta, tta="none")
    tta = Predictor(model, meta, tta="flips")
    gammas = tta.predict(grids, batch_size=2)
    for g, gamma in zip(grids, gammas, strict=True):
        logs = [np.log(augment_cell_field(plain.predict_grid(augment_grid(g, t)), t)) for t in FLIPS]
        by_hand = np.exp(np.mean(logs, axis=0))
        np.testing.assert_allclose(gamma[g.mask], by_hand[g.mask], rtol=1e-6)
        np.testing.assert_allclose(gamma[g.mask], pretrained.predict_gamma(model, meta, g, tta="flips")[g.mask],
                                   rtol=1e-6)
        assert np.abs(gamma[g.mask] / plain.predict_grid(g)[g.mask] - 1).max() > 1e-4  # it did change γ
    # the model's own setting is the default; "none" is the plain network
    assert np.allclose(Predictor(model, {**meta, "tta": "flips"}).predict_grid(grids[0])[grids[0].mask],
                       gammas[0][grids[0].mask], rtol=1e-6)
    np.testing.assert_array_equal(pretrained.predict_gamma(model, meta, grids[0]), plain.predict_grid(grids[0]))


def test_test_time_augmentation_rejects_what_is_not_a_flip():
    from diffnorm.transforms.augmentation import tta_transforms

    assert tta_transforms(None) == ("identity",)
    assert tta_transforms(["flip_x"]) == ("flip_x",)
    with pytest.raises(ValueError, match="each its own inverse"):
        tta_transforms(["identity", "rot90"])
    with pytest.raises(ValueError, match="unknown test-time augmentation"):
        tta_transforms("d4")


def test_input_range_error_names_channel_rows_and_valid_range():
    """Far inputs in a few rows (a polar cap) are told apart from wrong units (every row) by the rows named."""
    mask = np.ones((20, 10), dtype=bool)
    mask[:, 0] = False  # land: 180 ocean cells
    z = np.zeros((2, 20, 10))
    check_input_range(z, mask, ["a", "b"], "m")  # nothing far: no error
    z[1, 7, 1] = 50.0  # one far cell (0.6 % of the ocean) is tolerated
    check_input_range(z, mask, ["a", "b"], "m")
    z[0, 2:4] = 20.0  # 18 ocean cells
    z[1, 15, 5:] = -13.0  # 5 more
    with pytest.raises(ModelMismatchError) as err:
        check_input_range(z, mask, ["a", "b"], "m", "f.nc", {"coastlines": "polar land beyond 70"})
    text = str(err.value)
    assert text.startswith("f.nc: 13.3% of the ocean cells")  # 24 of 180
    assert "worst channel: a;" in text and "rows 2–3, 7, 15 of 20)" in text
    assert "m's valid range (polar land beyond 70)" in text and text.endswith("use --force to predict anyway")
    z[1, 10], z[1, 12, 4:], z[1, 18, 8:] = 30.0, 30.0, 30.0  # 9, 6, 2 cells: six runs in all
    # the three largest runs are shown, in row order, with their share of the 41 far cells
    with pytest.raises(ModelMismatchError, match=r"rows 2–3, 10, 12 of 20 \(80% of them\)"):
        check_input_range(z, mask, ["a", "b"], "m", remedy="pass force=True")
