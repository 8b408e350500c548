"""Small real datasets bundled with lstmkit (defaults of `lstmkit train forecast/classify` and the demo).

| name | file | what | licence |
|---|---|---|---|
| co2 | co2.csv | Mauna Loa weekly atmospheric CO2 (ppm), 1958-2001, with gaps | public domain (statsmodels) |
| nile | nile.csv | annual flow of the Nile at Aswan, 1871-1970 | public domain (statsmodels) |
| shampoo | ShampooSales.csv | monthly shampoo sales over three years | public (Makridakis et al., as in sktime) |
| italypower_train / italypower_test | ItalyPowerDemand_TRAIN.ts / _TEST.ts | UCR daily power demand curves, 2 classes | UCR archive (as in sktime, BSD-3) |

Example::

    from lstmkit.data import datasets
    datasets.list()            # ['co2', 'italypower_test', 'italypower_train', 'nile', 'shampoo']
    datasets.path("co2")       # .../lstmkit/data/datasets/co2.csv
"""
from __future__ import annotations

import builtins
from pathlib import Path

from lstmkit.errors import UserError

_HERE = Path(__file__).resolve().parent
_FILES = {
    "co2": "co2.csv",
    "nile": "nile.csv",
    "shampoo": "ShampooSales.csv",
    "italypower_train": "ItalyPowerDemand_TRAIN.ts",
    "italypower_test": "ItalyPowerDemand_TEST.ts",
}
#: Forecast horizon that goes with each bundled series (used when `lstmkit train forecast` has no --horizon).
HORIZONS = {"co2": 52, "nile": 10, "shampoo": 6}


def list() -> builtins.list:  # noqa: A001 (the public name the task asked for)
    """Names of the bundled datasets, sorted."""
    return sorted(_FILES)


def path(name: str) -> Path:
    """Path of bundled dataset ``name`` (see :func:`list`); UserError for an unknown name."""
    if name not in _FILES:
        raise UserError(f"dataset {name!r} is not bundled; expected one of {sorted(_FILES)}")
    return _HERE / _FILES[name]
