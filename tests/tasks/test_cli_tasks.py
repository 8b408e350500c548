"""`lstmkit train forecast|classify`, `predict`, `evaluate`, `demo` end to end: outputs, and error paths
(exit 2, one line, no output directory). Fast runs use tiny files and epochs; full datasets are marked slow."""
import csv
import io
import json
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from lstmkit.cli.main import main
from lstmkit.data import datasets
from lstmkit.models import load_model

DATA = Path(__file__).resolve().parents[1] / "data"
TINY = ["--epochs", "2", "--hidden", "8", "--quiet", "--backend", "reference"]


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def assert_user_error(tmp_path, argv, match):
    rc, out, err = run(*argv)
    lines = [ln for ln in err.splitlines() if ln.startswith("lstmkit: error:")]
    assert rc == 2 and len(lines) == 1 and match in lines[0], (rc, err)
    assert not (tmp_path / "o").exists()
    assert list(tmp_path.glob(".o.*")) == []  # no staging left behind


@pytest.fixture(scope="module")
def forecast_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fc") / "o"
    rc, out, err = run("train", "forecast", "--data", DATA / "monthly_gaps.csv", "--horizon", 6, "--out", d, *TINY)
    assert rc == 0, err
    assert "seasonal_naive" in out and "report:" in out
    return d


def test_forecast_outputs(forecast_dir):
    d = forecast_dir
    for f in ("config.json", "metrics.json", "report.md", "forecast.png", "training.png", "model/config.json"):
        assert (d / f).is_file(), f
    m = json.loads((d / "metrics.json").read_text())
    assert m["task"] == "forecast" and set(m["test"]) >= {"MAE", "RMSE", "MAPE", "sMAPE", "MASE"}
    assert set(m["baselines"]) == {"naive", "seasonal_naive"}
    assert m["data"]["repairs"]["inserted_timestamps"] == 1 and m["split"]["test"] == 6
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["task"] == "forecast" and cfg["resolved"]["season"] == 12 and cfg["target_names"] == ["sales"]
    model = load_model(d / "model")
    assert type(model).__name__ == "LSTMForecaster"
    assert "| LSTM |" in (d / "report.md").read_text()


def test_forecast_predict_and_evaluate(forecast_dir, tmp_path):
    out = tmp_path / "p.csv"
    rc, _, err = run("predict", "--model", forecast_dir, "--data", DATA / "monthly_gaps.csv", "--output", out,
                     "--quiet")
    assert rc == 0, err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 6 and rows[0]["month"] == "2005-01-01T00:00:00"
    for r in rows:
        assert float(r["sales_q10"]) <= float(r["sales"]) <= float(r["sales_q90"])
    rc, text, err = run("evaluate", "--model", forecast_dir, "--data", DATA / "monthly_gaps.csv")
    assert rc == 0, err
    ev = json.loads(text)
    saved = json.loads((forecast_dir / "metrics.json").read_text())
    # same data, same held-out window: evaluate reproduces the training run's test metrics
    assert ev["test"]["MAE"] == pytest.approx(saved["test"]["MAE"], rel=1e-5)
    assert ev["baselines"]["naive"]["MAE"] == pytest.approx(saved["baselines"]["naive"]["MAE"])


def test_forecast_predict_wrong_columns(forecast_dir, tmp_path):
    rc, _, err = run("predict", "--model", forecast_dir, "--data", DATA / "multi.csv")
    assert rc == 2 and "no such column" in err and "columns are" in err


def test_forecast_multivariate_with_covariates(tmp_path):
    rc, out, err = run("train", "forecast", "--data", DATA / "multi.csv", "--target", "a", "b", "--covariates",
                       "temp", "--horizon", 5, "--out", tmp_path / "o", *TINY)
    assert rc == 0, err
    cfg = json.loads((tmp_path / "o" / "config.json").read_text())
    assert cfg["target_names"] == ["a", "b"] and cfg["covariate_names"] == ["temp"]
    assert cfg["resolved"]["base"] == "naive"  # integer steps: no season


@pytest.mark.parametrize("args,match", [
    (["--data", DATA / "monthly_gaps.csv", "--target", "sale"], "columns are ['month', 'sales']"),
    (["--data", DATA / "monthly_gaps.csv", "--time-col", "Month"], "--time-col='Month': no such column"),
    (["--data", DATA / "nonnumeric.csv"], "non-numeric value 'n/a?'"),
    (["--data", DATA / "short.csv", "--horizon", 5], "too short for --horizon=5"),
    (["--data", DATA / "empty.csv"], "is empty"),
    (["--data", DATA / "nope.csv"], "does not exist"),
    (["--data", DATA / "monthly_gaps.csv", "--horizon", 0], "--horizon=0"),
    (["--data", DATA / "monthly_gaps.csv", "--epochs", 0], "--epochs=0"),
])
def test_forecast_errors_exit_2_and_leave_no_dir(tmp_path, args, match):
    assert_user_error(tmp_path, ["train", "forecast", *TINY, *args, "--out", tmp_path / "o"], match)


@pytest.fixture(scope="module")
def classify_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cl") / "o"
    rc, out, err = run("train", "classify", "--data", DATA / "tiny_TRAIN.ts", "--test-data", DATA / "tiny_TEST.ts",
                       "--out", d, *TINY)
    assert rc == 0, err
    return d


def test_classify_outputs_predict_evaluate(classify_dir, tmp_path):
    d = classify_dir
    for f in ("config.json", "metrics.json", "report.md", "confusion.png", "training.png"):
        assert (d / f).is_file(), f
    m = json.loads((d / "metrics.json").read_text())
    assert m["task"] == "classify" and set(m["test"]) == {"accuracy", "macro_f1"}
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (2, 2) and cm.sum() == 12 and m["test"]["accuracy"] == pytest.approx(np.trace(cm) / 12)
    assert m["classes"] == ["down", "up"]
    out = tmp_path / "p.csv"
    rc, _, err = run("predict", "--model", d, "--data", DATA / "tiny_TEST.ts", "--output", out, "--quiet")
    assert rc == 0, err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 12 and all(r["label"] in ("up", "down") for r in rows)
    assert all(abs(float(r["p_up"]) + float(r["p_down"]) - 1) < 1e-5 for r in rows)
    rc, text, err = run("evaluate", "--model", d, "--data", DATA / "tiny_TEST.ts")
    assert rc == 0 and json.loads(text)["test"]["accuracy"] == pytest.approx(m["test"]["accuracy"])


def test_classify_long_csv(tmp_path):
    rc, out, err = run("train", "classify", "--data", DATA / "long.csv", "--test-data", DATA / "long.csv",
                       "--out", tmp_path / "o", *TINY)
    assert rc == 0, err
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["data"]["dims"] == 2
    # predicting on a long CSV without the label column
    lines = (DATA / "long.csv").read_text().splitlines()
    (tmp_path / "nolabel.csv").write_text("\n".join(ln.rsplit(",", 1)[0] for ln in lines) + "\n")
    rc, text, err = run("predict", "--model", tmp_path / "o", "--data", tmp_path / "nolabel.csv")
    assert rc == 0, err
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sorted(r["id"] for r in rows) == sorted(f"s{i}" for i in range(12))


@pytest.mark.parametrize("train,test,match", [
    ("tiny_TRAIN.ts", "multi2_TRAIN.ts", "--test-data has 2 dimension(s) per step, the training data 1"),
    ("tiny_TRAIN.ts", "tiny_unknown_TEST.ts", "labels ['sideways'] never seen in training"),
    ("tiny_TRAIN.ts", "bad_value.ts", "non-numeric value 'x'"),
    ("empty.csv", "tiny_TEST.ts", "is empty"),
])
def test_classify_errors_exit_2_and_leave_no_dir(tmp_path, train, test, match):
    assert_user_error(tmp_path, ["train", "classify", "--data", DATA / train, "--test-data", DATA / test,
                                 "--out", tmp_path / "o", *TINY], match)


def test_predict_on_non_task_dir(tmp_path):
    rc, _, err = run("predict", "--model", tmp_path, "--data", DATA / "monthly_gaps.csv")
    assert rc == 2 and "does not exist" in err


# -- full datasets (slow) ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_co2_beats_seasonal_naive_by_30_percent(tmp_path):
    rc, out, err = run("train", "forecast", "--out", tmp_path / "o", "--quiet")
    assert rc == 0, err
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["split"]["test"] == 52
    assert m["test"]["MASE"] <= 0.7 * m["baselines"]["seasonal_naive"]["MASE"], m["test"]


@pytest.mark.slow
def test_shampoo_beats_naive(tmp_path):
    rc, out, err = run("train", "forecast", "--data", datasets.path("shampoo"), "--horizon", 6,
                       "--out", tmp_path / "o", "--quiet")
    assert rc == 0, err
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["test"]["MAE"] < m["baselines"]["naive"]["MAE"], m


@pytest.mark.slow
def test_italypower_accuracy(tmp_path):
    rc, out, err = run("train", "classify", "--out", tmp_path / "o", "--quiet")
    assert rc == 0, err
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["test"]["accuracy"] >= 0.95, m["test"]


@pytest.mark.slow
def test_demo_under_two_minutes(tmp_path):
    t = time.monotonic()
    rc, out, err = run("demo", "--out", tmp_path / "demo", "--quiet")
    assert rc == 0, err
    assert time.monotonic() - t < 120
    assert "report:" in out and "seasonal_naive" in out and (tmp_path / "demo" / "report.md").is_file()
