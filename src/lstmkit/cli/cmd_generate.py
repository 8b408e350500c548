"""`lstmkit generate`: sample text from a language model written by `lstmkit train lm`, streamed as produced."""
from __future__ import annotations


def _run(args) -> int:
    from lstmkit.tasks import generate

    return generate.run(args)


def register(sub, train_sub) -> None:
    p = sub.add_parser("generate", help="sample text from a trained language model",
                       description="Continue --prompt with --length tokens sampled from a model directory written "
                                   "by `lstmkit train lm`; tokens are printed as they are produced.")
    p.add_argument("--model", required=True, metavar="DIR", help="directory written by `lstmkit train lm`")
    p.add_argument("--prompt", default=None, help="text to continue (default: start of a new line)")
    p.add_argument("--length", type=int, default=300, help="tokens to generate (default: 300)")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="softmax temperature; 0 = greedy (default: 0.8)")
    p.add_argument("--top-k", type=int, default=None, help="sample only among the K most likely tokens")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling: smallest set with mass >= P")
    p.add_argument("--seed", type=int, default=None, help="random seed for repeatable samples")
    p.set_defaults(func=_run)
