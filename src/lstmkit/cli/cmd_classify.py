"""`lstmkit train classify`: train an LSTM sequence classifier (default: bundled ItalyPowerDemand)."""
from __future__ import annotations

from lstmkit.tasks.common import add_common_flags, common_from_args, metrics_table


def _run(args) -> int:
    from lstmkit.tasks.classify import NORMS, ClassifyConfig, train

    cfg = ClassifyConfig(data=args.data, test_data=args.test_data, norm=args.norm,
                         bidirectional=args.bidirectional, common=common_from_args(args))
    assert cfg.norm in NORMS
    if args.lr is not None:
        if not args.lr > 0:
            raise ValueError(f"--lr={args.lr} must be a positive number")
        cfg.lr = args.lr
    m = train(cfg)
    print(metrics_table({"LSTM": m["test"], **m["baselines"]}))
    print(f"report: {cfg.common.out}/report.md  (model, metrics.json, confusion matrix in {cfg.common.out}/)")
    return 0


def register(sub, train_sub) -> None:
    p = train_sub.add_parser(
        "classify", help="classify whole sequences (UCR/UEA .ts or long CSV)",
        description="Train an LSTM to classify sequences of any length. Files: UCR/UEA .ts (uni- or multivariate, "
                    "equal or variable length) or long CSV (id, time, features..., label). Without --data, uses "
                    "the bundled ItalyPowerDemand train/test split.")
    p.add_argument("--data", metavar="TRAIN", default=None, help="training file (.ts or long CSV)")
    p.add_argument("--test-data", metavar="TEST", default=None, help="test file (same format)")
    p.add_argument("--norm", choices=("series", "global", "none"), default="series",
                   help="z-normalisation: per series (default), global per dimension, or none")
    p.add_argument("--bidirectional", action="store_true",
                   help="read series both ways (default: forwards only, which scored better on ItalyPowerDemand)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 3e-3)")
    add_common_flags(p, default_out="runs/classify")
    p.set_defaults(func=_run)
