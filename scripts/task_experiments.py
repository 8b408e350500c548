"""Experiments behind the forecast/classify defaults (docs/tasks.md): grid over settings and seeds, JSON lines out.

Run from the repo root: ``OMP_NUM_THREADS=1 PYTHONPATH=src python3 scripts/task_experiments.py forecast > f.jsonl``
(``classify`` for the ItalyPowerDemand grid). Each line: dataset, settings, seed, test metrics, baselines, seconds.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")

from lstmkit.data import datasets  # noqa: E402
from lstmkit.tasks.common import CommonConfig  # noqa: E402

SETS = {"co2": (None, 52), "shampoo": (str(datasets.path("shampoo")), 6), "nile": (str(datasets.path("nile")), 10)}


def forecast_grid(which):
    from lstmkit.tasks.forecast import ForecastConfig, train

    variants = [{}, {"base": "seasonal"}, {"base": "seasonal", "window_mult": 2}, {"window_mult": 2},
                {"hidden": 64}, {"lr": 1e-3}]
    for name in which:
        data, h = SETS[name]
        season = {"co2": 52, "shampoo": 12, "nile": 1}[name]
        for v in variants:
            base, wm, hidden, lr = v.get("base"), v.get("window_mult"), v.get("hidden"), v.get("lr", 3e-3)
            window = None if wm is None else max(2, wm * (season if season > 1 else h))
            if name == "shampoo" and window is not None and window > 12:
                window = 12
            if name == "shampoo" and base == "seasonal":
                window = 12
            for seed in (0, 1, 2):
                with tempfile.TemporaryDirectory() as d:
                    t = time.time()
                    try:
                        m = train(ForecastConfig(data=data, horizon=h, base=base, window=window, lr=lr,
                                                 common=CommonConfig(out=d + "/o", quiet=True, seed=seed,
                                                                     hidden=hidden)))
                    except Exception as e:  # noqa: BLE001
                        print(json.dumps({"data": name, "error": str(e)}), flush=True)
                        continue
                    print(json.dumps({"data": name, "base": base, "window": window, "hidden": hidden, "lr": lr,
                                      "seed": seed, "test": m["test"], "baselines": m["baselines"],
                                      "epochs": m["training"]["epochs_run"], "seconds": round(time.time() - t, 1)}),
                          flush=True)


def classify_grid():
    from lstmkit.tasks.classify import ClassifyConfig, train

    for norm, bi, hidden in [("series", True, None), ("global", True, None), ("series", False, None),
                             ("series", True, 64)]:
        for seed in (0, 1, 2):
            with tempfile.TemporaryDirectory() as d:
                t = time.time()
                m = train(ClassifyConfig(norm=norm, bidirectional=bi,
                                         common=CommonConfig(out=d + "/o", quiet=True, seed=seed, hidden=hidden)))
                print(json.dumps({"data": "italypower", "norm": norm, "bidirectional": bi, "hidden": hidden,
                                  "seed": seed, "test": m["test"], "epochs": m["training"]["epochs_run"],
                                  "seconds": round(time.time() - t, 1)}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "forecast":
        forecast_grid(sys.argv[2:] or list(SETS))
    else:
        classify_grid()
