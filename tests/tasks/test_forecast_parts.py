"""Forecast internals: the residual-over-base encoding, interval calibration, the pinball loss, settings."""
import numpy as np
import pytest
import torch

from lstmkit.tasks.common import CommonConfig
from lstmkit.tasks.forecast import (ForecastConfig, LSTMForecaster, Scaler, calibrate, pinball_loss, resolve,
                                    widen)
from lstmkit.data.timeseries import load_series
from lstmkit.data import datasets
from lstmkit.errors import UserError


def test_seasonal_base_and_round_trip():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 8, 2))
    Y = rng.normal(size=(5, 6, 1))
    sc = Scaler.fit(X, Y, k=1, season=4, base="seasonal")
    b = sc.base_forecast(X, 6)
    # seasonal naive from the window: step i repeats X[:, 8 - 4 + (i mod 4)]
    np.testing.assert_allclose(b[:, :, 0], X[:, [4, 5, 6, 7, 4, 5], 0])
    z = sc.encode(X, Y)
    back = sc.decode(X, np.repeat(z[..., None], 3, axis=-1).astype(np.float64))
    np.testing.assert_allclose(back[..., 1], Y, rtol=1e-5, atol=1e-5)
    # inputs: level-normalised (last step 0), covariate standardised with the training mean/std
    inp = sc.inputs(X)
    np.testing.assert_allclose(inp[:, -1, 0], 0.0, atol=1e-7)
    np.testing.assert_allclose(inp[..., 1], (X[..., 1] - X[..., 1].mean()) / (X[..., 1].std() + 1e-8), rtol=1e-4)
    st = Scaler.from_state(1, sc.state())
    np.testing.assert_allclose(st.decode(X, np.zeros((5, 6, 1, 3)))[..., 0], b)


def test_naive_base_when_window_shorter_than_season():
    X = np.arange(12.0).reshape(2, 6, 1)
    sc = Scaler(1, 12, "seasonal", [1.0], [1.0], [], [])
    np.testing.assert_allclose(sc.base_forecast(X, 3)[:, :, 0], [[5, 5, 5], [11, 11, 11]])


def test_calibrate_reaches_target_coverage():
    rng = np.random.default_rng(1)
    Y = rng.normal(size=(4000, 1, 1))
    # a band of +-0.5 covers ~38% of N(0,1); the 80% band is +-1.2816 -> factor ~2.56
    fc = np.stack([np.full_like(Y, -0.5), np.zeros_like(Y), np.full_like(Y, 0.5)], axis=-1)
    a = calibrate(fc, Y)
    assert 2.4 <= a <= 2.75
    # exactly: the first 0.05 step at or above the sample's 80% quantile of |Y| over the half-width 0.5
    assert a == pytest.approx(np.ceil(np.quantile(np.abs(Y), 0.8) / 0.5 / 0.05) * 0.05, abs=0.051)
    w = widen(fc, a)
    assert np.mean((Y >= w[..., 0]) & (Y <= w[..., 2])) >= 0.8


def test_pinball_loss_matches_hand_value():
    pred = torch.tensor([[[[0.0, 1.0, 2.0]]]])  # (1, 1, 1, 3)
    y = torch.tensor([[[1.5]]])
    # q=.1: d=1.5 -> .15; q=.5: d=.5 -> .25; q=.9: d=-.5 -> .05
    assert pinball_loss(pred, y, (0.1, 0.5, 0.9)).item() == pytest.approx((0.15 + 0.25 + 0.05) / 3)


def test_forecaster_output_shape():
    m = LSTMForecaster(3, 2, 5, hidden=4)
    assert m(torch.randn(7, 10, 3)).shape == (7, 5, 2, 3)


def test_resolve_defaults():
    co2 = load_series(datasets.path("co2"))
    s = resolve(ForecastConfig(), co2, "co2")
    assert (s["horizon"], s["season"], s["window"], s["base"]) == (52, 52, 52, "naive")
    assert s["val"] == round(0.1 * (2284 - 52))
    nile = load_series(datasets.path("nile"))
    s = resolve(ForecastConfig(horizon=10), nile, None)
    assert (s["season"], s["window"], s["base"]) == (1, 20, "naive")
    sh = load_series(datasets.path("shampoo"))  # 36 points: 24 fit, 6 validation, 6 test -> window 12, 7 windows
    assert resolve(ForecastConfig(horizon=6), sh, None)["window"] == 12
    assert resolve(ForecastConfig(horizon=8), sh, None)["window"] == 7  # capped: 20 fit points - 8 - 5
    with pytest.raises(UserError, match="too short"):
        resolve(ForecastConfig(horizon=40), nile, None)
    with pytest.raises(UserError, match="--season=0"):
        resolve(ForecastConfig(season=0, common=CommonConfig()), nile, None)
