"""`lstmkit train textclass`: train an LSTM text classifier (see lstmkit.tasks.textclass)."""
from __future__ import annotations

import argparse
import json

from lstmkit.tasks.common import add_common_flags, common_from_args


def _run(args) -> int:
    from lstmkit.tasks import textclass

    cfg = textclass.TextClassConfig(data=args.data, test_data=args.test_data, text_col=args.text_col,
                                    label_col=args.label_col, embed=args.embed, pooling=args.pooling,
                                    bidirectional=args.bidirectional, dropout=args.dropout, lr=args.lr,
                                    max_len=args.max_len, min_freq=args.min_freq, common=common_from_args(args))
    m = textclass.train(cfg)
    if not args.quiet:
        t = m["test"]
        print(json.dumps({"test": {"accuracy": t["accuracy"], "macro_f1": t["macro_f1"]},
                          "baselines": m["baselines"]}, indent=2))
        print(f"wrote {cfg.common.out}")
    return 0


def register(sub, train_sub) -> None:
    p = train_sub.add_parser(
        "textclass", help="train an LSTM text classifier",
        description="Train a (bi)LSTM text classifier on a CSV (--text-col, --label-col) or a directory of fortune "
                    "files (label = file name). Without --data the bundled fortune collections are used; without "
                    "--test-data the data is shuffled with --seed and split 80/20. Compares with TF-IDF + "
                    "logistic regression.")
    p.add_argument("--data", default=None, metavar="TRAIN.csv|DIR",
                   help="training CSV or fortune directory (default: bundled fortune collections)")
    p.add_argument("--test-data", default=None, metavar="TEST.csv|DIR", help="test data (default: 20%% split)")
    p.add_argument("--text-col", default="text", help="CSV column holding the text (default: text)")
    p.add_argument("--label-col", default="label", help="CSV column holding the label (default: label)")
    p.add_argument("--embed", type=int, default=128, help="word embedding size (default: 128)")
    p.add_argument("--pooling", choices=("max", "mean", "last"), default="max",
                   help="how the LSTM outputs become one vector (default: max over valid steps)")
    p.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=True,
                   help="bidirectional LSTM (default: yes)")
    p.add_argument("--dropout", type=float, default=0.4, help="dropout (default: 0.4)")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default: 2e-3)")
    p.add_argument("--max-len", type=int, default=200, help="tokens kept per text (default: 200)")
    p.add_argument("--min-freq", type=int, default=2, help="rarer words become <unk> (default: 2)")
    add_common_flags(p, default_out="runs/textclass")
    p.set_defaults(func=_run)
