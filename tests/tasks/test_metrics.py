"""Forecast and classification metrics against values computed by hand."""
import math

import numpy as np
import pytest

from lstmkit.tasks import metrics as M

Y = [2.0, 4.0, 5.0, 0.0]
F = [3.0, 2.0, 5.0, 1.0]  # errors 1, -2, 0, 1


def test_mae_rmse():
    assert M.mae(Y, F) == pytest.approx((1 + 2 + 0 + 1) / 4)
    assert M.rmse(Y, F) == pytest.approx(math.sqrt((1 + 4 + 0 + 1) / 4))


def test_mape_skips_zero_actuals():
    # |1/2| + |2/4| + |0/5| over the three non-zero actuals, in percent
    assert M.mape(Y, F) == pytest.approx(100 * (0.5 + 0.5 + 0.0) / 3)
    assert math.isnan(M.mape([0.0, 0.0], [1.0, 2.0]))


def test_smape():
    # 2|e|/(|y|+|f|): 2/5, 4/6, 0/10, 2/1
    assert M.smape(Y, F) == pytest.approx(100 * (2 / 5 + 4 / 6 + 0 + 2 / 1) / 4)
    assert M.smape([0.0], [0.0]) == 0.0


def test_mase_seasonal_scale():
    insample = [1.0, 3.0, 2.0, 6.0, 4.0]
    # season 2: |2-1| + |6-3| + |4-2| = 1 + 3 + 2 -> mean 2
    assert M.seasonal_scale(insample, 2) == pytest.approx(2.0)
    assert M.mase(Y, F, insample, season=2) == pytest.approx(1.0 / 2.0)
    # season 1: |2|,|1|,|4|,|2| -> 9/4
    assert M.mase(Y, F, insample, season=1) == pytest.approx(1.0 / (9 / 4))
    # too short for the season: falls back to lag 1
    assert M.seasonal_scale([1.0, 2.0, 4.0], 5) == pytest.approx(1.5)


def test_mase_multivariate_averages_columns():
    y = np.array([[1.0, 10.0], [2.0, 20.0]])
    f = np.array([[2.0, 10.0], [2.0, 30.0]])
    ins = np.array([[0.0, 0.0], [1.0, 10.0], [2.0, 20.0]])
    # column 0: MAE .5 / scale 1; column 1: MAE 5 / scale 10 -> both .5
    assert M.mase(y, f, ins, 1) == pytest.approx(0.5)


def test_baseline_forecasts():
    h = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]])
    assert M.naive_forecast(h, 3)[:, 0].tolist() == [5.0, 5.0, 5.0]
    assert M.seasonal_naive_forecast(h, 5, 2)[:, 0].tolist() == [4.0, 5.0, 4.0, 5.0, 4.0]
    assert M.seasonal_naive_forecast(h, 2, 1)[:, 0].tolist() == [5.0, 5.0]


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ"):
        M.mae([1.0, 2.0], [1.0])


def test_classification_metrics():
    y = [0, 0, 1, 1, 2, 2]
    p = [0, 1, 1, 1, 2, 0]
    cm = M.confusion_matrix(y, p, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert M.accuracy(y, p) == pytest.approx(4 / 6)
    # F1 per class: c0 tp1 fp1 fn1 -> 2/4; c1 tp2 fp1 fn0 -> 4/5; c2 tp1 fp0 fn1 -> 2/3
    assert M.macro_f1(y, p, 3) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_pinball_and_coverage():
    # level .9: under-forecast by 2 costs .9*2, over-forecast by 1 costs .1*1
    assert M.pinball([3.0, 1.0], [1.0, 2.0], 0.9) == pytest.approx((1.8 + 0.1) / 2)
    assert M.coverage([1.0, 2.0, 3.0], [0.0, 2.5, 2.0], [1.5, 3.0, 3.0]) == pytest.approx(2 / 3)
