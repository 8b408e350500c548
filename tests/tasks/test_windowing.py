"""Sliding windows: shapes, positions, and no test point ever reaching a training window."""
import numpy as np
import pytest

from lstmkit.data.windowing import sliding_windows, split_points, window_starts


def test_split_points():
    sp = split_points(100, horizon=10, val=15)
    assert (sp.fit_end, sp.train_end, sp.n) == (75, 90, 100)
    with pytest.raises(ValueError, match="too short"):
        split_points(20, horizon=10, val=10)


def test_windows_values_and_shapes():
    y = np.arange(12.0)
    X, Y = sliding_windows(y, window=3, horizon=2, end=10)
    assert X.shape == (6, 3, 1) and Y.shape == (6, 2, 1)
    assert X[0, :, 0].tolist() == [0, 1, 2] and Y[0, :, 0].tolist() == [3, 4]
    assert X[-1, :, 0].tolist() == [5, 6, 7] and Y[-1, :, 0].tolist() == [8, 9]  # last target index 9 < end


def test_validation_windows_targets_start_at_first_target():
    y = np.arange(30.0)
    X, Y = sliding_windows(y, window=4, horizon=3, end=25, first_target=20)
    assert Y[:, 0, 0].min() == 20 and Y[:, -1, 0].max() == 24
    assert window_starts(25, 4, 3, 20).tolist() == [16, 17, 18]


def test_covariates_appended():
    y = np.arange(10.0)[:, None]
    c = 100 + np.arange(10.0)[:, None]
    X, Y = sliding_windows(y, 2, 1, end=10, covariates=c)
    assert X.shape == (8, 2, 2) and X[0].tolist() == [[0, 100], [1, 101]] and Y.shape == (8, 1, 1)


@pytest.mark.parametrize("window,horizon,val", [(5, 3, 4), (12, 6, 6), (1, 1, 0), (20, 10, 10)])
def test_no_test_point_leaks_into_training(window, horizon, val):
    """Poison the test part (and the validation part for the fit windows) and check training data is unchanged:
    this fails if any window read a single index at or past its cut-off."""
    rng = np.random.default_rng(0)
    n = 80
    clean = rng.normal(size=(n, 2))
    cov = rng.normal(size=(n, 1))
    sp = split_points(n, horizon, val)
    poisoned, pcov = clean.copy(), cov.copy()
    poisoned[sp.train_end:] = np.nan
    pcov[sp.train_end:] = 1e12
    for end, first in ((sp.fit_end, 0), (sp.train_end, sp.fit_end)):
        X0, Y0 = sliding_windows(clean, window, horizon, end=end, first_target=first, covariates=cov)
        X1, Y1 = sliding_windows(poisoned, window, horizon, end=end, first_target=first, covariates=pcov)
        if first == sp.fit_end and val < horizon:
            assert len(X0) == 0  # no validation window fits: nothing to check
            continue
        assert len(X0) > 0
        assert np.isfinite(X1).all() and np.isfinite(Y1).all() and np.abs(X1).max() < 1e6
        np.testing.assert_array_equal(X0, X1)
        np.testing.assert_array_equal(Y0, Y1)
    # the fit windows must not see validation points either
    pv = clean.copy()
    pv[sp.fit_end:] = np.nan
    X2, Y2 = sliding_windows(pv, window, horizon, end=sp.fit_end)
    assert np.isfinite(X2).all() and np.isfinite(Y2).all()


def test_end_past_series_is_an_error():
    with pytest.raises(ValueError, match="past the series length"):
        sliding_windows(np.arange(5.0), 2, 1, end=6)
