"""Weight averaging of trained stages (``diffnorm.pretrained.average_models``): the standardization folding is
exact, the average is the parameter mean, and what cannot be averaged is refused by name."""

import numpy as np
import pytest
import torch

from diffnorm.models import build_model
from diffnorm.pretrained import _in_reference_units, average_models, load_model

CHANNELS = ["mask", "distance", "area", "analytic_sf"]  # every channel valid exactly on the ocean cells
KWARGS = {"in_channels": 4, "filters": 8, "blocks": 2, "skip": "v2", "batchnorm": False, "periodic_x": True}


def _meta(seed: int, kwargs=KWARGS) -> dict:
    rng = np.random.default_rng(seed)
    mean = [0.0, 0.0, *map(float, rng.normal(size=2))]
    std = [1.0, 1.0, *map(float, rng.uniform(0.3, 3.0, size=2))]
    return {"model": "cnn", "model_kwargs": dict(kwargs),
            "input_transform": {"channels": CHANNELS, "mean": mean, "std": std},
            "target_transform": {"kind": "log_ratio_images", "mean": float(rng.normal(0, 0.1)),
                                 "std": float(rng.uniform(0.05, 2.0)), "exact_small": 0}}


def _save(path, seed: int, meta: dict, state=None):
    torch.manual_seed(seed)
    model = build_model("cnn", **meta["model_kwargs"])
    if state is not None:
        model.load_state_dict({k: v.float() for k, v in state.items()})
    torch.save({"state_dict": model.state_dict(), "meta": meta}, str(path))
    return path


def _target(model, meta, raw: np.ndarray, ocean: np.ndarray) -> np.ndarray:
    """The network's de-standardized target from raw (unstandardized) channels, as prediction feeds it."""
    it, tt = meta["input_transform"], meta["target_transform"]
    z = (raw - np.array(it["mean"])[:, None, None]) / np.array(it["std"])[:, None, None]
    z = np.where(ocean, z, 0.0)
    with torch.no_grad():
        y = model(torch.tensor(z[None], dtype=torch.float32))[0, 0].double().numpy()
    return y * tt["std"] + tt["mean"]


def _raw(shape=(14, 20), seed=3):
    rng = np.random.default_rng(seed)
    ocean = rng.random(shape) > 0.25
    raw = np.stack([ocean.astype(float), rng.normal(size=shape), rng.normal(1, 2, size=shape),
                    rng.normal(-1, 0.5, size=shape)])
    return np.where(ocean, raw, 0.0), ocean


def test_folding_into_other_standardizations_keeps_the_function(tmp_path):
    meta_a, meta_b = _meta(1), _meta(2)
    model_a, _ = load_model(_save(tmp_path / "a.pt", 0, meta_a))
    folded = _in_reference_units(model_a.state_dict(), meta_a, meta_b)
    model_ab, _ = load_model(_save(tmp_path / "ab.pt", 0, meta_b, folded))
    raw, ocean = _raw()
    want = _target(model_a, meta_a, raw, ocean)
    got = _target(model_ab, meta_b, raw, ocean)
    assert np.abs(want[ocean]).max() > 1e-2  # a non-trivial function
    np.testing.assert_allclose(got[ocean], want[ocean], atol=2e-5 * np.abs(want[ocean]).max())


def test_average_of_one_function_in_two_unit_systems_is_that_function(tmp_path):
    meta_a, meta_b = _meta(1), _meta(2)
    a = _save(tmp_path / "a.pt", 0, meta_a)
    model_a, _ = load_model(a)
    b = _save(tmp_path / "b.pt", 0, meta_b, _in_reference_units(model_a.state_dict(), meta_a, meta_b))
    soup, meta = average_models([a, b], reference=0)
    assert meta["input_transform"] == meta_a["input_transform"]
    for k, v in model_a.state_dict().items():
        torch.testing.assert_close(soup.state_dict()[k], v, rtol=1e-5, atol=1e-6)


def test_average_is_the_parameter_mean_in_the_reference_units(tmp_path):
    meta = _meta(4)
    paths = [_save(tmp_path / f"m{i}.pt", i, meta) for i in range(3)]
    soup, _ = average_models(paths)
    states = [load_model(p)[0].state_dict() for p in paths]
    for k, v in soup.state_dict().items():
        torch.testing.assert_close(v, sum(s[k] for s in states) / 3, rtol=1e-5, atol=1e-6)
    assert not soup.training


def test_average_refuses_other_architectures_batch_norm_and_nothing(tmp_path):
    a = _save(tmp_path / "a.pt", 0, _meta(1))
    wider = _save(tmp_path / "w.pt", 0, _meta(1, {**KWARGS, "filters": 12}))
    with pytest.raises(ValueError, match="another architecture"):
        average_models([a, wider])
    bn = _save(tmp_path / "bn.pt", 0, _meta(1, {**KWARGS, "batchnorm": True}))
    with pytest.raises(ValueError, match="batch norm"):
        average_models([bn, bn])
    with pytest.raises(ValueError, match="at least one"):
        average_models([])


def test_cli_average_writes_a_model_that_loads_weights_only(tmp_path, capsys):
    from diffnorm.cli import main

    meta = _meta(4)
    a, b = _save(tmp_path / "a.pt", 0, meta), _save(tmp_path / "b.pt", 1, meta)
    assert main(["average", str(a), str(b), "-o", str(tmp_path / "soup.pt")]) == 0
    assert "mean of 2 models" in capsys.readouterr().out
    model, got_meta = load_model(tmp_path / "soup.pt")
    want, _ = average_models([a, b])
    for k, v in want.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v)
    assert got_meta["averaged_from"] == [str(a), str(b)]
    assert (tmp_path / "soup.json").exists() and not list(tmp_path.glob("*.tmp"))
    assert main(["average", str(a), "-o", str(tmp_path / "one.pt")]) != 0
    assert "at least two" in capsys.readouterr().err
    assert main(["average", str(a), str(b), "--reference", "2", "-o", str(tmp_path / "r.pt")]) != 0
    assert "--reference 2" in capsys.readouterr().err
