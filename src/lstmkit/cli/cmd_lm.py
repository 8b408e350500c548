"""`lstmkit train lm`: train a character or word LSTM language model (see lstmkit.tasks.lm)."""
from __future__ import annotations

import json

from lstmkit.tasks.common import add_common_flags, common_from_args


def _run(args) -> int:
    from lstmkit.tasks import lm

    cfg = lm.LMConfig(data=args.data, test_data=args.test_data, level=args.level, lower=args.lower,
                      embed=args.embed, bptt=args.bptt, lr=args.lr, dropout=args.dropout,
                      min_freq=args.min_freq, common=common_from_args(args))
    metrics = lm.train(cfg)
    if not args.quiet:
        print(json.dumps({"test": metrics["test"], "baselines": metrics["baselines"]}, indent=2))
        print(f"wrote {cfg.common.out}")
    return 0


def register(sub, train_sub) -> None:
    p = train_sub.add_parser(
        "lm", help="train a character/word LSTM language model",
        description="Train an LSTM language model with truncated BPTT. Without --data the bundled fortune corpus "
                    "(0.78 MB English) is used; without --test-data the last 10%% of the text is held out. "
                    "Reports bits per character (char) or perplexity (word) and an xz baseline.")
    p.add_argument("--data", default=None, metavar="FILE_OR_DIR",
                   help="UTF-8 text file or directory of files (default: bundled fortune corpus)")
    p.add_argument("--test-data", default=None, metavar="FILE", help="held-out text (default: last 10%% of --data)")
    p.add_argument("--level", choices=("char", "word"), default="char", help="token level (default: char)")
    p.add_argument("--lower", action="store_true", help="lowercase the text first")
    p.add_argument("--embed", type=int, default=64, help="embedding size (default: 64)")
    p.add_argument("--bptt", type=int, default=100, help="truncated-BPTT chunk length in tokens (default: 100)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default: 3e-3, cosine decay)")
    p.add_argument("--dropout", type=float, default=0.1, help="dropout on embeddings/outputs (default: 0.1)")
    p.add_argument("--min-freq", type=int, default=1, help="word level: rarer words become <unk> (default: 1)")
    add_common_flags(p, default_out="runs/lm")
    p.set_defaults(func=_run)
