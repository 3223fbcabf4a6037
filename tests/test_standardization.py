import json

import numpy as np
import pytest

from diffnorm.transforms import Standardizer


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(3.0, 2.0, (6, 5, 7)), rng.lognormal(0.0, 1.0, (6, 5, 7))], axis=1)
    mask = rng.random((6, 5, 7)) > 0.3
    x[:, 0][~mask] = 1e6  # garbage on land must not leak into partial statistics
    return x, mask


def test_partial_statistics_over_ocean_only(data):
    x, mask = data
    s = Standardizer("partial", ["a", "b"]).fit(x, mask)
    for c in range(2):
        ocean = x[:, c][mask]
        assert s.mean[c] == pytest.approx(ocean.mean(), rel=1e-13)
        assert s.std[c] == pytest.approx(ocean.std(), rel=1e-13)
    z = s.transform(x, mask)
    assert np.all(np.where(mask[:, None], 0.0, z) == 0.0)  # land set to 0 after scaling
    for c in range(2):
        assert z[:, c][mask].mean() == pytest.approx(0.0, abs=1e-12)
        assert z[:, c][mask].std() == pytest.approx(1.0, rel=1e-12)


def test_full_statistics_over_all_cells(data):
    x, _ = data
    x = np.random.default_rng(1).normal(3.0, 2.0, x.shape)
    s = Standardizer("full").fit(x)
    np.testing.assert_allclose(s.mean, x.mean(axis=(0, 2, 3)), rtol=1e-13)
    np.testing.assert_allclose(s.std, x.std(axis=(0, 2, 3)), rtol=1e-13)
    z = s.transform(x)
    np.testing.assert_allclose(s.inverse_transform(z), x, rtol=0, atol=1e-14 * np.abs(x).max())


def test_round_trip_and_serialization(data):
    x, mask = data
    s = Standardizer("partial", ["a", "b"]).fit(x, mask)
    state = json.loads(json.dumps(s.to_dict()))
    s2 = Standardizer.from_dict(state)
    assert s2.channels == ["a", "b"] and s2.mode == "partial"
    np.testing.assert_array_equal(s2.mean, s.mean)
    np.testing.assert_array_equal(s2.std, s.std)
    z = s.transform(x, mask)
    np.testing.assert_array_equal(s2.transform(x, mask), z)  # exact after the JSON round trip
    back = s2.inverse_transform(z, mask, land_value=np.nan)
    ocean = np.broadcast_to(mask[:, None], x.shape)
    np.testing.assert_allclose(back[ocean], x[ocean], rtol=1e-14, atol=1e-14)
    assert np.all(np.isnan(back[~ocean]))
    # single sample (C, ny, nx) in, same rank out
    assert s.transform(x[0], mask[0]).shape == x[0].shape


def test_streaming_fit_equals_single_fit(data):
    x, mask = data
    one = Standardizer("partial").fit(x, mask)
    many = Standardizer("partial")
    for k in range(0, 6, 2):
        many.partial_fit(x[k:k + 2], mask[k:k + 2])
    np.testing.assert_allclose(many.mean, one.mean, rtol=1e-13)
    np.testing.assert_allclose(many.std, one.std, rtol=1e-13)


def test_constant_channel_and_errors(data):
    x, mask = data
    const = np.ones((2, 1, 3, 3))
    s = Standardizer("full").fit(const)
    assert s.std[0] == 1.0 and np.all(s.transform(const) == 0)
    with pytest.raises(ValueError, match="mode"):
        Standardizer("half")
    with pytest.raises(ValueError, match="mask"):
        Standardizer("partial").fit(x)
    with pytest.raises(RuntimeError, match="not fitted"):
        Standardizer().transform(x, mask)
    with pytest.raises(ValueError, match="channels"):
        Standardizer("partial", ["a"]).fit(x, mask)
    with pytest.raises(ValueError, match="finite"):
        Standardizer("full").fit(np.full((1, 1, 2, 2), np.nan))
    with pytest.raises(ValueError, match="mask has shape"):
        Standardizer("partial").fit(x, mask[:, :2])
    with pytest.raises(ValueError, match="missing"):
        Standardizer.from_dict({"mode": "full"})


def test_log_channels(data):
    x, mask = data
    x = np.abs(x) + 0.1
    x[:, 1][~mask] = 0.0  # land may hold 0 in a log channel under "partial"
    s = Standardizer("partial", ["a", "b"], log_channels=["b"]).fit(x, mask)
    ocean_b = np.log10(x[:, 1][mask])
    assert s.mean[1] == pytest.approx(ocean_b.mean(), rel=1e-13)
    assert s.std[1] == pytest.approx(ocean_b.std(), rel=1e-13)
    z = s.transform(x, mask)
    s2 = Standardizer.from_dict(json.loads(json.dumps(s.to_dict())))
    assert s2.log_channels == ["b"]
    np.testing.assert_array_equal(s2.transform(x, mask), z)
    back = s2.inverse_transform(z, mask)
    ocean = np.broadcast_to(mask[:, None], x.shape)
    np.testing.assert_allclose(back[ocean], x[ocean], rtol=1e-13)
    bad = x.copy()
    bad[:, 1][mask] *= -1
    with pytest.raises(ValueError, match="> 0"):
        s.transform(bad, mask)
    with pytest.raises(ValueError, match="not among"):
        Standardizer("partial", ["a"], log_channels=["c"])
    full = Standardizer("full", log_channels=[0]).fit(np.abs(x[:, :1]) + 1)
    assert full.mean[0] == pytest.approx(np.log10(np.abs(x[:, :1]) + 1).mean(), rel=1e-13)
