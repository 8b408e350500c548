"""`lstmkit demo`: train the bundled co2 forecast end to end (< 2 minutes on 2 cores) and show the result."""
from __future__ import annotations

import time
import warnings


def _run(args) -> int:
    from lstmkit.cli.cmd_forecast import print_summary
    from lstmkit.tasks.common import CommonConfig
    from lstmkit.tasks.forecast import ForecastConfig, train

    start = time.monotonic()
    if not args.quiet:
        print("lstmkit demo: forecasting the bundled weekly Mauna Loa CO2 series 52 weeks ahead "
              "(LSTM vs naive and seasonal-naive baselines)...")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*native engine unavailable.*")
        m = train(ForecastConfig(common=CommonConfig(out=args.out, quiet=args.quiet, time_budget=75.0)))
    print_summary(m, args.out)
    sn = m["baselines"]["seasonal_naive"]["MASE"]
    print(f"MASE {m['test']['MASE']:.3f} vs seasonal naive {sn:.3f} "
          f"({100 * (1 - m['test']['MASE'] / sn):.0f}% lower); took {time.monotonic() - start:.0f} s")
    return 0


def register(sub, train_sub) -> None:
    p = sub.add_parser("demo", help="train the bundled co2 forecast end to end and show the report",
                       description="Train an LSTM on the bundled weekly CO2 series (1958-2001), forecast the last "
                                   "52 weeks, compare with the naive and seasonal-naive forecasts and write "
                                   "a report with plots. Takes under two minutes on two CPU cores.")
    p.add_argument("--out", default="lstmkit-demo", metavar="DIR", help="output directory (default: lstmkit-demo)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
