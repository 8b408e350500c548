"""`lstmkit predict` and `lstmkit evaluate`: run a trained task directory on new data (dispatch by its task)."""
from __future__ import annotations

import importlib

from lstmkit.errors import UserError
from lstmkit.tasks.common import task_config


def _task_module(model_dir):
    task = task_config(model_dir)["task"]
    try:
        return importlib.import_module(f"lstmkit.tasks.{task}")
    except ModuleNotFoundError:
        raise UserError(f"{model_dir}/config.json names task {task!r}, which this lstmkit does not have") from None


def _predict(args) -> int:
    return int(_task_module(args.model).predict(args) or 0)


def _evaluate(args) -> int:
    return int(_task_module(args.model).evaluate(args) or 0)


def register(sub, train_sub) -> None:
    p = sub.add_parser("predict", help="predict with a trained model directory",
                       description="Predict with a model directory written by `lstmkit train <task>`: forecasts "
                                   "the next horizon points after the data (forecast), or labels/tags each "
                                   "input (classify, textclass, tag).")
    p.add_argument("--model", required=True, metavar="DIR", help="directory written by `lstmkit train`")
    p.add_argument("--data", required=True, metavar="PATH", help="input file (same format as for training)")
    p.add_argument("--output", metavar="PATH", default=None, help="write predictions here (CSV); default stdout")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_predict)

    e = sub.add_parser("evaluate", help="score a trained model directory on labelled data",
                       description="Score a model directory written by `lstmkit train <task>` on labelled data "
                                   "and print the task's metrics as JSON.")
    e.add_argument("--model", required=True, metavar="DIR", help="directory written by `lstmkit train`")
    e.add_argument("--data", required=True, metavar="PATH", help="labelled data (same format as for training)")
    e.add_argument("--quiet", action="store_true", help="no progress output")
    e.set_defaults(func=_evaluate)
