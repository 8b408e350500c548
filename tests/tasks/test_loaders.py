"""Loaders: time series tables (CSV/Parquet) and labelled sequences (.ts, long CSV), on good and broken files."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstmkit.data import datasets
from lstmkit.data.timeseries import load_series, season_for
from lstmkit.data.ucr import load_long_csv, load_sequences, load_ts
from lstmkit.errors import UserError

DATA = Path(__file__).resolve().parents[1] / "data"


def test_monthly_with_gaps_is_repaired():
    s = load_series(DATA / "monthly_gaps.csv")
    assert s.freq == "monthly" and s.season == 12 and s.time_col == "month" and s.target_names == ["sales"]
    assert len(s) == 60  # the removed month is back on the grid
    assert s.repairs == {"inserted_timestamps": 1, "interpolated_values": 2, "dropped_rows": 0}
    raw = pd.read_csv(DATA / "monthly_gaps.csv")
    # month 20 was empty: linear interpolation between its neighbours (rows 19 and 21 of the file)
    assert s.values[20, 0] == pytest.approx((raw.sales[19] + raw.sales[21]) / 2)
    assert s.times[33] == pd.Timestamp("2002-10-01") and np.isfinite(s.values).all()
    assert s.future_times(2) == ["2005-01-01T00:00:00", "2005-02-01T00:00:00"]


def test_integer_steps_multivariate_with_covariates():
    s = load_series(DATA / "multi.csv", targets=["a", "b"], covariates=["temp"])
    assert s.time_kind == "step" and s.freq == "step" and s.season == 1
    assert s.values.shape == (80, 2) and s.covariates.shape == (80, 1)
    assert s.future_times(2) == [80, 81]
    d = load_series(DATA / "multi.csv")  # default targets: every other column
    assert d.target_names == ["a", "b", "temp"] and d.covariates.shape == (80, 0)


def test_bundled_series_formats():
    co2 = load_series(datasets.path("co2"))
    assert co2.freq == "weekly" and co2.season == 52 and len(co2) == 2284
    assert co2.repairs["interpolated_values"] == 59 and str(co2.times[0].date()) == "1958-03-29"
    nile = load_series(datasets.path("nile"))
    assert nile.time_kind == "year" and nile.freq == "yearly" and nile.season == 1
    sh = load_series(datasets.path("shampoo"))
    assert sh.freq == "monthly" and len(sh) == 36
    assert datasets.list() == ["co2", "italypower_test", "italypower_train", "nile", "shampoo"]
    with pytest.raises(UserError, match="not bundled"):
        datasets.path("airline")


def test_season_for():
    assert [season_for(f) for f in ("weekly", "monthly", "daily", "hourly", "quarterly", "yearly", "step")] == \
        [52, 12, 7, 24, 4, 1, 1]


def test_hourly_and_quarterly_inferred(tmp_path):
    p = tmp_path / "h.csv"
    pd.DataFrame({"t": pd.date_range("2021-01-01", periods=50, freq="h"), "v": np.arange(50.0)}).to_csv(p, index=False)
    assert load_series(p).freq == "hourly"
    q = tmp_path / "q.csv"
    pd.DataFrame({"t": pd.date_range("2001-01-01", periods=20, freq="QS"), "v": np.arange(20.0)}).to_csv(q, index=False)
    assert load_series(q).season == 4


def test_parquet_equals_csv(tmp_path):
    """Parquet (pyarrow, a test extra) loads to the same series as the same table in CSV, dates included."""
    pytest.importorskip("pyarrow")
    df = pd.DataFrame({"week": pd.date_range("2020-01-05", periods=60, freq="W"),
                       "a": np.sin(np.arange(60.0)), "b": np.arange(60.0) ** 0.5})
    df.loc[7, "a"] = np.nan  # a missing value, repaired the same way in both
    df.to_csv(tmp_path / "s.csv", index=False)
    df.to_parquet(tmp_path / "s.parquet")
    from_csv = load_series(tmp_path / "s.csv", targets=["a", "b"])
    from_pq = load_series(tmp_path / "s.parquet", targets=["a", "b"])
    assert from_pq.freq == from_csv.freq == "weekly"
    np.testing.assert_allclose(from_pq.values, from_csv.values)


def test_parquet_or_clear_error(tmp_path):
    p = tmp_path / "s.parquet"
    df = pd.DataFrame({"t": np.arange(30), "v": np.arange(30.0)})
    try:
        df.to_parquet(p)
    except ImportError:
        p.write_bytes(b"PAR1 not really")
        with pytest.raises(UserError, match="Parquet needs pyarrow"):
            load_series(p)
        return
    assert len(load_series(p)) == 30


@pytest.mark.parametrize("kwargs,match", [
    ({"targets": ["sale"]}, r"--target='sale': no such column .*columns are \['month', 'sales'\]"),
    ({"time_col": "date"}, r"--time-col='date': no such column"),
    ({"covariates": ["price"]}, r"--covariates='price'"),
])
def test_missing_columns_list_existing(kwargs, match):
    with pytest.raises(UserError, match=match):
        load_series(DATA / "monthly_gaps.csv", **kwargs)


@pytest.mark.parametrize("name,match", [
    ("nonnumeric.csv", r"column 'value' .* non-numeric value 'n/a\?' in data row 8"),
    ("empty.csv", "is empty"),
    ("does_not_exist.csv", "does not exist"),
])
def test_broken_series_files(name, match):
    with pytest.raises(UserError, match=match):
        load_series(DATA / name)


def test_binary_file_is_a_user_error(tmp_path):
    p = tmp_path / "b.csv"
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(UserError):
        load_series(p)


def test_duplicate_times(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("t,v\n1,1\n2,2\n2,3\n")
    with pytest.raises(UserError, match="repeats the time 2"):
        load_series(p)


# -- labelled sequences ----------------------------------------------------------------------------------------
def test_ts_univariate_variable_length():
    s = load_ts(DATA / "tiny_TRAIN.ts")
    assert len(s) == 24 and s.dims == 1 and s.class_labels == ["up", "down"] and s.name == "Tiny"
    assert len(set(s.lengths.tolist())) > 1 and set(s.labels) == {"up", "down"}


def test_ts_multivariate_with_missing():
    s = load_ts(DATA / "multi2_TRAIN.ts")
    assert s.dims == 2 and s.series[0].shape == (6, 2)
    # '?' at step 2 of dimension 2 (values 0,1,?,3,...) interpolates to 2
    assert s.series[0][2, 1] == pytest.approx(2.0) and s.series[0][:, 0].tolist() == [0, 1, 2, 3, 4, 5]


def test_bundled_italypower():
    tr, te = load_sequences(datasets.path("italypower_train")), load_sequences(datasets.path("italypower_test"))
    assert (len(tr), len(te), tr.dims) == (67, 1029, 1) and set(tr.lengths) == {24}


@pytest.mark.parametrize("name,match", [
    ("bad_dims.ts", "case has 1 dimensions, earlier cases have 2"),
    ("bad_value.ts", "non-numeric value 'x'"),
    ("no_data.ts", "no @data line"),
    ("empty.csv", "is empty"),
])
def test_broken_ts_files(name, match):
    with pytest.raises(UserError, match=match):
        load_sequences(DATA / name)


def test_long_csv_groups_and_orders_by_time():
    s = load_long_csv(DATA / "long.csv")
    assert len(s) == 12 and s.dims == 2 and set(s.labels) == {"up", "down"}
    raw = pd.read_csv(DATA / "long.csv")
    i = s.ids.index("s3")
    g = raw[raw.id == "s3"].sort_values("t")
    np.testing.assert_allclose(s.series[i], g[["x1", "x2"]].to_numpy())
    assert s.labels[i] == g.label.iloc[0]


def test_long_csv_conflicting_labels(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text("id,t,x,label\na,0,1,u\na,1,2,v\n")
    with pytest.raises(UserError, match="several labels"):
        load_long_csv(p)
