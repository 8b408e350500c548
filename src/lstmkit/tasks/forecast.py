"""Forecasting task: train an LSTM to forecast the next ``horizon`` points of a series, with intervals and baselines.

Pipeline (``train(cfg)``; the CLI is ``lstmkit train forecast``, see docs/tasks.md):

1. load the table (:func:`lstmkit.data.timeseries.load_series`): regular grid, gaps filled, season inferred;
2. split: the last ``horizon`` points are the **test** window; the ``val`` points before them are the
   validation part (early stopping); the rest trains the weights. Windows come from
   :mod:`lstmkit.data.windowing`, which never reads past its cut-off;
3. each window is **level-normalised**: every target is taken relative to its last input value and divided
   by a per-target scale fitted on the training part; covariates are standardised. The network predicts the
   **residual over a base forecast** (``base="naive"``, the default: the last value, so the network learns
   season and trend; ``"seasonal"``: the seasonal naive forecast read from the window), all ``horizon`` steps
   at once (direct multi-step output: one linear head reading the last hidden state; no feeding back of its
   own forecasts, so errors do not compound);
4. the head outputs three quantiles (10%, 50%, 90%) trained with the pinball loss: the median is the point
   forecast, 10-90% the prediction interval drawn in the plot. Crossed quantiles are sorted, then the band is
   widened or narrowed by one factor so that 80% of the validation targets fall inside (calibration);
5. metrics (MAE, RMSE, MAPE, sMAPE, MASE) of the model and of the naive and seasonal-naive baselines on the
   test window; plots; report.

Example::

    from lstmkit.tasks.forecast import ForecastConfig, train
    metrics = train(ForecastConfig(data="co2.csv", horizon=52, common=CommonConfig(out="runs/co2")))
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from lstmkit.data import datasets
from lstmkit.data.timeseries import Series, load_series
from lstmkit.data.windowing import split_points, sliding_windows
from lstmkit.errors import UserError
from lstmkit.models import Model, load_model, register, save_model
from lstmkit.tasks import metrics as M
from lstmkit.tasks import plots
from lstmkit.tasks.common import (CommonConfig, OutputDir, TimeBudget, base_config, make_recurrent, progress,
                                  set_seed, single_threaded, task_config, write_json, write_predictions,
                                  write_report)

TASK = "forecast"
QUANTILES = (0.1, 0.5, 0.9)
DEFAULTS = dict(hidden=32, layers=1, epochs=80, batch_size=64, lr=3e-3, patience=12)


@dataclass
class ForecastConfig:
    """Settings of ``lstmkit train forecast`` (``None`` = the documented default, chosen from the data).

    Attributes:
        data: CSV/Parquet path; None = the bundled co2 series (horizon 52).
        time_col / targets / covariates: columns (defaults: first column / all others / none).
        horizon: points to forecast (= the test window). Default: the bundled dataset's, else the season if
            > 1, else 10.
        season: season length; default inferred from the frequency (weekly 52, monthly 12, ...).
        window: input window length; default one season (or ``2 * horizon`` without a season), capped so the
            training part yields at least 6 windows.
        base: what the network corrects: "naive" (the last value; default) or "seasonal" (the seasonal naive
            forecast read from the window; needs window >= season).
        val: validation points before the test window; default ``max(horizon, 10% of the training part)``.
        lr, patience: Adam learning rate, early-stopping patience in epochs.
        common: the shared flags (out, epochs, hidden, layers, cell, seed, quiet, time budget, backend).
    """

    data: Optional[str] = None
    time_col: Optional[str] = None
    targets: Optional[List[str]] = None
    covariates: Optional[List[str]] = None
    horizon: Optional[int] = None
    season: Optional[int] = None
    window: Optional[int] = None
    base: Optional[str] = None
    val: Optional[int] = None
    lr: float = DEFAULTS["lr"]
    patience: int = DEFAULTS["patience"]
    common: CommonConfig = field(default_factory=CommonConfig)


@register("forecast.LSTMForecaster")
class LSTMForecaster(Model):
    """Recurrent encoder + linear head: ``(B, L, D)`` windows -> ``(B, horizon, n_targets, len(quantiles))``.

    Args:
        n_inputs: features per step D (targets + covariates); n_targets: K; horizon: H.
        hidden, layers, cell, backend: the recurrent encoder (:func:`lstmkit.tasks.common.make_recurrent`).
        quantiles: the quantile levels the head outputs, ascending.
    """

    def __init__(self, n_inputs: int, n_targets: int, horizon: int, hidden: int = 32, layers: int = 1,
                 cell: str = "lstm", quantiles: Sequence[float] = QUANTILES, backend: str = "auto"):
        super().__init__()
        self.n_targets, self.horizon, self.quantiles = n_targets, horizon, list(quantiles)
        self.rnn = make_recurrent(cell, n_inputs, hidden, layers, backend=backend)
        self.head = nn.Linear(hidden, horizon * n_targets * len(self.quantiles))

    def call(self, x):
        out = self.rnn(x)[0]
        return self.head(out[:, -1]).view(x.shape[0], self.horizon, self.n_targets, len(self.quantiles))


def pinball_loss(pred: torch.Tensor, y: torch.Tensor, quantiles: Sequence[float]) -> torch.Tensor:
    """Mean pinball loss of ``pred`` (B, H, K, Q) for targets ``y`` (B, H, K)."""
    q = torch.tensor(list(quantiles), dtype=pred.dtype)
    d = y.unsqueeze(-1) - pred
    return torch.maximum(q * d, (q - 1) * d).mean()


# -- the transform between raw windows and network inputs/targets --------------------------------------------
class Scaler:
    """Level normalisation of windows and the residual-over-base target encoding (state saved in config.json).

    ``inputs(X)``: targets minus each window's last value, divided by ``in_scale``; covariates standardised.
    ``encode(X, Y)``: ``(Y - base(X)) / out_scale``; ``decode(X, Z)`` inverts it (Z may have a quantile axis).
    """

    def __init__(self, k: int, season: int, base: str, in_scale, out_scale, cov_mean, cov_std,
                 interval_scale: float = 1.0):
        self.k, self.season, self.base, self.interval_scale = k, season, base, float(interval_scale)
        self.in_scale, self.out_scale = np.asarray(in_scale, float), np.asarray(out_scale, float)
        self.cov_mean, self.cov_std = np.asarray(cov_mean, float), np.asarray(cov_std, float)

    @classmethod
    def fit(cls, X: np.ndarray, Y: np.ndarray, k: int, season: int, base: str) -> "Scaler":
        c = X[..., k:]
        s = cls(k, season, base, np.ones(k), np.ones(k), c.reshape(-1, c.shape[-1]).mean(0) if c.size else [],
                c.reshape(-1, c.shape[-1]).std(0) + 1e-8 if c.size else [])
        lvl = X[:, :, :k] - X[:, -1:, :k]
        s.in_scale = lvl.reshape(-1, k).std(0) + 1e-8
        s.out_scale = (Y - s.base_forecast(X, Y.shape[1])).reshape(-1, k).std(0) + 1e-8
        return s

    def state(self) -> dict:
        return {"season": self.season, "base": self.base, "in_scale": self.in_scale, "out_scale": self.out_scale,
                "cov_mean": self.cov_mean, "cov_std": self.cov_std, "interval_scale": self.interval_scale}

    @classmethod
    def from_state(cls, k: int, st: dict) -> "Scaler":
        return cls(k, st["season"], st["base"], st["in_scale"], st["out_scale"], st["cov_mean"], st["cov_std"],
                   st.get("interval_scale", 1.0))

    def base_forecast(self, X: np.ndarray, h: int) -> np.ndarray:
        """(N, h, K) base forecast from input windows X (N, L, D)."""
        t = X[:, :, :self.k]
        if self.base == "seasonal" and self.season > 1 and t.shape[1] >= self.season:
            last = t[:, -self.season:]
            return last[:, [i % self.season for i in range(h)]]
        return np.repeat(t[:, -1:], h, axis=1)

    def inputs(self, X: np.ndarray) -> np.ndarray:
        t = (X[:, :, :self.k] - X[:, -1:, :self.k]) / self.in_scale
        c = (X[:, :, self.k:] - self.cov_mean) / self.cov_std if X.shape[2] > self.k else X[:, :, self.k:]
        return np.concatenate([t, c], axis=2).astype(np.float32)

    def encode(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        return ((Y - self.base_forecast(X, Y.shape[1])) / self.out_scale).astype(np.float32)

    def decode(self, X: np.ndarray, Z: np.ndarray) -> np.ndarray:
        """Z (N, H, K, Q) network output -> (N, H, K, Q) forecasts in data units."""
        b = self.base_forecast(X, Z.shape[1])
        return b[..., None] + Z * self.out_scale[None, None, :, None]


# -- settings resolution --------------------------------------------------------------------------------------
def resolve(cfg: ForecastConfig, series: Series, bundled: Optional[str]) -> dict:
    """Concrete settings for ``cfg`` on ``series`` (horizon, season, window, val, base, sizes); UserError when the
    series is too short."""
    n = len(series)
    season = cfg.season if cfg.season is not None else series.season
    if season < 1:
        raise UserError(f"--season={season} must be a positive integer")
    horizon = cfg.horizon
    if horizon is None:
        horizon = (datasets.HORIZONS.get(bundled) if bundled else None) or (season if season > 1 else 10)
    if horizon < 1:
        raise UserError(f"--horizon={horizon} must be a positive integer")
    n_train = n - horizon
    val = cfg.val if cfg.val is not None else max(horizon, int(round(0.1 * n_train)))
    fit_end = n_train - val
    if cfg.window is not None and cfg.window < 1:
        raise UserError(f"--window={cfg.window} must be a positive integer")
    window = cfg.window or (season if season > 1 else 2 * horizon)
    if cfg.window is None:  # keep at least 6 training windows when the series allows it
        window = max(min(window, fit_end - horizon - 5), min(window, 4))
    need = window + 2 * horizon + val
    if window < 1 or fit_end - window - horizon + 1 < 1:
        raise UserError(f"series of {n} points (after repairs) is too short for --horizon={horizon}: it needs at "
                        f"least {max(need, 2 * horizon + val + 2)} points (window {window} + horizon {horizon} for "
                        f"training + {val} validation + {horizon} test)")
    base = cfg.base or "naive"
    if base not in ("seasonal", "naive"):
        raise UserError(f"--base={base!r} is not known; expected 'seasonal' or 'naive'")
    c = cfg.common
    return dict(horizon=horizon, season=season, window=window, val=val, base=base,
                **c.sizes(DEFAULTS)._asdict())


def _load(cfg: ForecastConfig) -> Tuple[Series, Optional[str]]:
    if cfg.data is None:
        return load_series(datasets.path("co2")), "co2"
    return load_series(cfg.data, cfg.time_col, cfg.targets, cfg.covariates), None


def _predict_windows(model: LSTMForecaster, scaler: Scaler, X: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        z = model(torch.from_numpy(scaler.inputs(X))).numpy().astype(np.float64)
    fc = np.sort(scaler.decode(X, z), axis=-1)  # rearrange crossed quantiles so q10 <= median <= q90
    return widen(fc, scaler.interval_scale)


def widen(fc: np.ndarray, factor: float) -> np.ndarray:
    """Scale the distance of the outer quantiles from the median by ``factor`` (interval calibration)."""
    med = fc[..., 1:2]
    return med + (fc - med) * factor


def calibrate(fc: np.ndarray, Y: np.ndarray, target: float = 0.8) -> float:
    """Smallest factor in [0.5, 5] by which the 10-90% band of forecasts ``fc`` (N, H, K, 3) must be widened so
    that a share ``target`` of the validation targets ``Y`` (N, H, K) falls inside (split-conformal style)."""
    for a in np.arange(0.5, 5.0001, 0.05):
        w = widen(fc, a)
        if np.mean((Y >= w[..., 0]) & (Y <= w[..., 2])) >= target:
            return float(round(a, 2))
    return 5.0


def _fit(model, scaler, Xf, Yf, Xv, Yv, s: dict, cfg: ForecastConfig) -> Dict[str, list]:
    """Adam + pinball loss, early stopping on validation loss (best weights restored)."""
    xi, yi = torch.from_numpy(scaler.inputs(Xf)), torch.from_numpy(scaler.encode(Xf, Yf))
    xv, yv = torch.from_numpy(scaler.inputs(Xv)), torch.from_numpy(scaler.encode(Xv, Yv))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    budget = TimeBudget(cfg.common.time_budget)
    hist: Dict[str, list] = {"loss": [], "val_loss": []}
    best, best_state, bad = float("inf"), None, 0
    bar = progress(range(s["epochs"]), quiet=cfg.common.quiet, desc="forecast", leave=False)
    for _ in bar:
        model.train()
        perm = torch.randperm(len(xi))
        tot = 0.0
        for i in range(0, len(xi), s["batch_size"]):
            b = perm[i:i + s["batch_size"]]
            loss = pinball_loss(model(xi[b]), yi[b], QUANTILES)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            tot += loss.item() * len(b)
        model.eval()
        with torch.no_grad():
            vl = pinball_loss(model(xv), yv, QUANTILES).item() if len(xv) else tot / len(xi)
        hist["loss"].append(tot / len(xi))
        hist["val_loss"].append(vl)
        bar.set_postfix(loss=f"{tot / len(xi):.4f}", val=f"{vl:.4f}")
        if vl < best - 1e-6:
            best, bad = vl, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
        if bad >= cfg.patience or budget.exceeded():
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return hist


# -- train / predict / evaluate ----------------------------------------------------------------------------------
def _score(y_true: np.ndarray, fc: np.ndarray, history: np.ndarray, season: int, horizon: int):
    """(model metrics incl. interval coverage, baselines dict, baseline forecasts)."""
    med = fc[:, :, QUANTILES.index(0.5)]
    test = M.forecast_metrics(y_true, med, history, season)
    test["coverage_80"] = M.coverage(y_true, fc[:, :, 0], fc[:, :, -1])
    bf = {"naive": M.naive_forecast(history, horizon),
          "seasonal_naive": M.seasonal_naive_forecast(history, horizon, season)}
    return test, {k: M.forecast_metrics(y_true, v, history, season) for k, v in bf.items()}, bf


def train(cfg: ForecastConfig) -> dict:
    """Train, evaluate on the test window and write ``cfg.common.out`` (see module doc); returns metrics.json."""
    c = cfg.common
    set_seed(c.seed)
    series, bundled = _load(cfg)
    s = resolve(cfg, series, bundled)
    H, L, k = s["horizon"], s["window"], series.values.shape[1]
    sp = split_points(len(series), H, s["val"])
    y, cov = series.values, series.covariates if series.covariates.shape[1] else None
    Xf, Yf = sliding_windows(y, L, H, end=sp.fit_end, covariates=cov)
    Xv, Yv = sliding_windows(y, L, H, end=sp.train_end, first_target=sp.fit_end, covariates=cov)
    scaler = Scaler.fit(Xf, Yf, k, s["season"], s["base"])
    model = LSTMForecaster(Xf.shape[2], k, H, hidden=s["hidden"], layers=s["layers"], cell=c.cell,
                           backend=c.backend)
    budget = TimeBudget(None)
    with single_threaded():
        hist = _fit(model, scaler, Xf, Yf, Xv, Yv, s, cfg)
    seconds = budget.elapsed()
    if len(Xv):  # calibrate the 10-90% band on the validation windows
        scaler.interval_scale = calibrate(_predict_windows(model, scaler, Xv), Yv)
    # test: forecast the last H points from the window that ends where the test starts
    feats = y if cov is None else np.concatenate([y, cov], axis=1)
    x_last = feats[sp.train_end - L:sp.train_end][None]
    fc = _predict_windows(model, scaler, x_last)[0]
    history = y[:sp.train_end]
    test, baselines, bf = _score(y[sp.train_end:], fc, history, s["season"], H)
    out = c.out or "runs/forecast"
    metrics = {"task": TASK, "test": test, "baselines": baselines,
               "data": {"path": str(cfg.data or datasets.path("co2")), "points": len(series), "freq": series.freq,
                        "targets": series.target_names, "covariates": series.covariate_names,
                        "repairs": series.repairs},
               "split": {"fit": sp.fit_end, "validation": s["val"], "test": H},
               "training": {"epochs_run": len(hist["loss"]), "seconds": round(seconds, 2),
                            "best_val_loss": min(hist["val_loss"]) if hist["val_loss"] else None,
                            "windows": len(Xf)}}
    settings = {k2: v for k2, v in asdict(cfg).items() if k2 != "common"}
    settings.update(resolved=s, time_col=series.time_col, time_kind=series.time_kind, freq=series.freq,
                    target_names=series.target_names, covariate_names=series.covariate_names,
                    quantiles=list(QUANTILES), scaler=scaler.state())
    with OutputDir(out) as od:
        save_model(model, od.path / "model", metadata={"task": TASK}, include_optimizer=False)
        write_json(od.path / "config.json", base_config(TASK, c, **settings))
        write_json(od.path / "metrics.json", metrics)
        plots.plot_forecast(od.path / "forecast.png", series, sp.train_end, fc, {
            "naive": bf["naive"], "seasonal naive": bf["seasonal_naive"]}, context=max(4 * H, 3 * L))
        plots.plot_curves(od.path / "training.png", {"training": hist["loss"], "validation": hist["val_loss"]},
                          "pinball loss (scaled)", log=True)
        rows = {"LSTM": test, **baselines}
        r = series.repairs
        write_report(od.path / "report.md", f"Forecast: {', '.join(series.target_names)} ({H} steps ahead)", rows,
                     plots=["forecast.png", "training.png"], notes=[
                         f"data: {metrics['data']['path']} — {len(series)} points, frequency {series.freq}, "
                         f"season {s['season']}; repairs: {r['inserted_timestamps']} missing time stamps "
                         f"inserted, {r['interpolated_values']} missing values interpolated, "
                         f"{r['dropped_rows']} edge rows dropped",
                         f"split: {sp.fit_end} points train the weights, {s['val']} validate (early stopping), "
                         f"the last {H} are the test window",
                         f"model: {c.cell} hidden {s['hidden']} x {s['layers']} layer(s), window {L}, "
                         f"residual over the {s['base']} forecast, direct {H}-step output with 10/50/90% quantiles",
                         f"MASE is scaled by the in-sample seasonal-naive MAE (season {s['season']}); "
                         f"coverage_80 = share of test points inside the 10-90% interval (its width calibrated "
                         f"on the validation windows: factor {scaler.interval_scale:g})",
                         f"training: {len(hist['loss'])} epochs, {seconds:.1f} s, {len(Xf)} windows"])
    return metrics


def _load_trained(model_dir):
    cfg = task_config(model_dir)
    if cfg.get("task") != TASK:
        raise UserError(f"--model={str(model_dir)!r} holds a {cfg.get('task')!r} model, not a forecast model")
    model = load_model(Path(model_dir) / "model")
    scaler = Scaler.from_state(len(cfg["target_names"]), cfg["scaler"])
    return cfg, model, scaler


def _series_for(cfg: dict, data) -> Series:
    """Load ``data`` with the trained model's columns (UserError listing the columns if they are missing)."""
    return load_series(data, cfg["time_col"], cfg["target_names"], cfg["covariate_names"])


def _features(series: Series) -> np.ndarray:
    y = series.values
    return y if not series.covariates.shape[1] else np.concatenate([y, series.covariates], axis=1)


def predict(args) -> int:
    """``lstmkit predict``: forecast the next horizon points after the end of ``args.data``; CSV to
    ``args.output`` (or stdout): the time, then per target the median and the 10%/90% quantiles."""
    cfg, model, scaler = _load_trained(args.model)
    s = cfg["resolved"]
    series = _series_for(cfg, args.data)
    L, H = s["window"], s["horizon"]
    if len(series) < L:
        raise UserError(f"--data={args.data!r} has {len(series)} points; the model needs the last {L} (its window)")
    fc = _predict_windows(model, scaler, _features(series)[-L:][None])[0]
    cols = [cfg["time_col"]]
    for name in cfg["target_names"]:
        cols += [name, f"{name}_q10", f"{name}_q90"]
    lines = [",".join(cols)]
    for i, t in enumerate(series.future_times(H)):
        vals = [str(t)]
        for j in range(len(cfg["target_names"])):
            vals += [f"{fc[i, j, 1]:.6g}", f"{fc[i, j, 0]:.6g}", f"{fc[i, j, 2]:.6g}"]
        lines.append(",".join(vals))
    text = "\n".join(lines) + "\n"
    write_predictions(text, args.output, args.quiet, f"{H} forecast rows")
    return 0


def evaluate(args) -> int:
    """``lstmkit evaluate``: hold out the last horizon points of ``args.data``, forecast them from the window
    before, print the model's and the baselines' metrics as JSON."""
    import json

    cfg, model, scaler = _load_trained(args.model)
    s = cfg["resolved"]
    series = _series_for(cfg, args.data)
    L, H = s["window"], s["horizon"]
    if len(series) < L + H + 1:
        raise UserError(f"--data={args.data!r} has {len(series)} points; evaluating needs at least {L + H + 1} "
                        f"(window {L} + horizon {H} + 1)")
    feats, end = _features(series), len(series) - H
    fc = _predict_windows(model, scaler, feats[end - L:end][None])[0]
    test, baselines, _ = _score(series.values[end:], fc, series.values[:end], s["season"], H)
    print(json.dumps({"task": TASK, "test": test, "baselines": baselines}, indent=2))
    return 0
