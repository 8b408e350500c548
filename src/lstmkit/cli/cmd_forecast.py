"""`lstmkit train forecast`: train an LSTM forecaster on a CSV/Parquet series (default: the bundled co2 data)."""
from __future__ import annotations

from lstmkit.tasks.common import add_common_flags, common_from_args, metrics_table


def _run(args) -> int:
    from lstmkit.tasks.forecast import ForecastConfig, train

    cfg = ForecastConfig(data=args.data, time_col=args.time_col, targets=args.target, covariates=args.covariates,
                         horizon=args.horizon, season=args.season, window=args.window, base=args.base,
                         common=common_from_args(args))
    if args.lr is not None:
        if not args.lr > 0:
            raise ValueError(f"--lr={args.lr} must be a positive number")
        cfg.lr = args.lr
    m = train(cfg)
    print_summary(m, cfg.common.out)
    return 0


def print_summary(m: dict, out: str) -> None:
    """Print the metric-vs-baselines table and where the outputs are."""
    print(metrics_table({"LSTM": m["test"], **m["baselines"]}))
    print(f"report: {out}/report.md  (model, metrics.json, plots in {out}/)")


def register(sub, train_sub) -> None:
    p = train_sub.add_parser(
        "forecast", help="forecast a time series (CSV/Parquet with a time column)",
        description="Train an LSTM to forecast the next --horizon points of a series. The last --horizon points "
                    "are held out as the test window; the report compares the model with the naive and "
                    "seasonal-naive forecasts. Without --data, uses the bundled weekly co2 series (horizon 52).")
    p.add_argument("--data", metavar="PATH", default=None, help="CSV or Parquet file (default: bundled co2.csv)")
    p.add_argument("--time-col", metavar="COL", default=None, help="time column (default: the first column)")
    p.add_argument("--target", metavar="COL", nargs="+", default=None,
                   help="column(s) to forecast (default: every column except time and covariates)")
    p.add_argument("--covariates", metavar="COL", nargs="+", default=None,
                   help="extra input columns (observed, not forecast)")
    p.add_argument("--horizon", type=int, default=None, metavar="N",
                   help="steps to forecast = size of the test window (default: 52 for co2, else the season, else 10)")
    p.add_argument("--season", type=int, default=None, metavar="N",
                   help="season length (default: from the frequency: weekly 52, monthly 12, daily 7, hourly 24, "
                        "quarterly 4, else 1)")
    p.add_argument("--window", type=int, default=None, metavar="N",
                   help="input window length (default: one season, or 2 horizons without a season)")
    p.add_argument("--base", choices=("seasonal", "naive"), default=None,
                   help="forecast the network corrects: the last value (naive, default) or the last season")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 3e-3)")
    add_common_flags(p, default_out="runs/forecast")
    p.set_defaults(func=_run)
