"""`lstmkit train tag`: train a BiLSTM sequence tagger on CoNLL data (see lstmkit.tasks.tag)."""
from __future__ import annotations

import json

from lstmkit.tasks.common import add_common_flags, common_from_args


def _run(args) -> int:
    from lstmkit.tasks import tag

    cfg = tag.TagConfig(data=args.data, test_data=args.test_data, embed=args.embed, char_features=args.char_features,
                        dropout=args.dropout, lr=args.lr, common=common_from_args(args))
    m = tag.train(cfg)
    if not args.quiet:
        keys = ("precision", "recall", "f1", "token_accuracy")
        print(json.dumps({"test": {k: m["test"][k] for k in keys}, "baselines": m["baselines"]}, indent=2))
        print(f"wrote {cfg.common.out}")
    return 0


def register(sub, train_sub) -> None:
    from lstmkit.tasks.tag import add_flags

    p = train_sub.add_parser(
        "tag", help="train a BiLSTM sequence tagger (e.g. named entities) on CoNLL data",
        description="Train a BiLSTM token tagger (optional character features) on a CoNLL file: one token per "
                    "line, tag in the last column, blank lines between sentences. Scores entities with conlleval "
                    "semantics (exact span match) and token accuracy.")
    add_flags(p)
    add_common_flags(p, default_out="runs/tag")
    p.set_defaults(func=_run)
