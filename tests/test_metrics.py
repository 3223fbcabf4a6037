import numpy as np
import pytest

from diffnorm.metrics import aggregate_metrics, relative_error, sample_metrics


def test_hand_computed_metrics():
    ref = np.array([[1.0, 2.0], [np.nan, 1.0]])
    est = np.array([[1.1, 2.0], [5.0, 0.9]])
    eps = np.array([0.21, 0.0, -0.19])  # (1.21-1)/1, 0, (0.81-1)/1
    np.testing.assert_allclose(relative_error(est, ref), eps)
    m = sample_metrics(est, ref)
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean(eps**2)))
    assert m["max"] == pytest.approx(0.21)
    assert m["mean"] == pytest.approx(0.4 / 3)
    assert m["q9999"] == pytest.approx(np.quantile(np.abs(eps), 0.9999))
    assert 0.2099 < m["q9999"] <= 0.21


def test_aggregate_is_mean_and_std_over_samples():
    rows = [{"rmse": 1, "q9999": 2, "max": 3, "mean": 4}, {"rmse": 3, "q9999": 4, "max": 5, "mean": 6}]
    agg = aggregate_metrics(rows)
    assert agg["max"] == 4 and agg["max_std"] == 1 and agg["mean"] == 5


def test_metric_errors():
    with pytest.raises(ValueError, match="shape"):
        sample_metrics(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        sample_metrics(np.array([np.nan, 1.0]), np.ones(2))
    with pytest.raises(ValueError, match="no samples"):
        aggregate_metrics([])
