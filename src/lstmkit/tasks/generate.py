"""Sampling from a trained language model: temperature, top-k and nucleus (top-p) sampling, streamed output.

``lstmkit generate --model DIR [--prompt TEXT] [--length N] [--temperature T] [--top-k K] [--top-p P] [--seed S]``
loads the model written by ``lstmkit train lm``, feeds it the prompt and prints each new token as soon as it is
sampled (flushed), so output appears while generation runs.
"""
from __future__ import annotations

import sys
from typing import Callable, List, Optional

import torch

from lstmkit.errors import UserError


def sample(logits: torch.Tensor, temperature: float = 1.0, top_k: Optional[int] = None,
           top_p: Optional[float] = None, generator: Optional[torch.Generator] = None) -> int:
    """One token id drawn from next-token ``logits`` of shape (V,).

    Args:
        logits: unnormalised scores (V,).
        temperature: divides the logits; 0 means greedy (the arg-max, no randomness).
        top_k: when set (>= 1), only the ``k`` highest-scoring tokens can be drawn (ties at the k-th score are
            cut by index order, so exactly ``k`` candidates remain).
        top_p: when set (0 < p <= 1), nucleus sampling: only the smallest set of most likely tokens whose
            probability sums to at least ``p`` can be drawn (the most likely token always stays).
        generator: torch.Generator for repeatable draws.

    >>> sample(torch.tensor([0.1, 3.0, 0.2]), temperature=0)
    1
    """
    if logits.dim() != 1:
        raise ValueError(f"logits must be 1-D (V,), got shape {tuple(logits.shape)}")
    if temperature < 0:
        raise UserError(f"--temperature={temperature} must be >= 0 (0 = greedy)")
    if top_k is not None and top_k < 1:
        raise UserError(f"--top-k={top_k} must be a positive integer")
    if top_p is not None and not 0 < top_p <= 1:
        raise UserError(f"--top-p={top_p} must be in (0, 1]")
    logits = logits.detach().float()
    if temperature == 0:
        return int(torch.argmax(logits))
    scores = logits / temperature
    keep = torch.ones_like(scores, dtype=torch.bool)
    if top_k is not None and top_k < scores.numel():
        idx = torch.topk(scores, top_k).indices
        keep = torch.zeros_like(keep)
        keep[idx] = True
    if top_p is not None and top_p < 1:
        masked = scores.masked_fill(~keep, float("-inf"))
        probs = torch.softmax(masked, dim=0)
        sorted_p, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_p, 0) - sorted_p  # mass of strictly more likely tokens
        nucleus = order[before < top_p]
        keep = torch.zeros_like(keep)
        keep[nucleus] = True
    probs = torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=0)
    return int(torch.multinomial(probs, 1, generator=generator))


def generate_ids(model, prompt_ids: List[int], length: int, *, temperature: float = 1.0, top_k: Optional[int] = None,
                 top_p: Optional[float] = None, seed: Optional[int] = None,
                 on_token: Optional[Callable[[int], None]] = None) -> List[int]:
    """``length`` new ids continuing ``prompt_ids`` (non-empty) from a model with ``model(x, state) ->
    (logits (1, T, V), state)``; ``on_token(id)`` is called as each id is drawn."""
    if not prompt_ids:
        raise ValueError("prompt_ids must hold at least one id")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    out: List[int] = []
    model.eval()
    with torch.no_grad():
        logits, state = model(torch.tensor([prompt_ids], dtype=torch.long), state=None)
        last = logits[0, -1]
        for _ in range(length):
            nxt = sample(last, temperature, top_k, top_p, gen)
            out.append(nxt)
            if on_token is not None:
                on_token(nxt)
            logits, state = model(torch.tensor([[nxt]], dtype=torch.long), state=state)
            last = logits[0, -1]
    return out


def run(args) -> int:
    """The ``lstmkit generate`` command (see module docstring)."""
    from lstmkit.tasks import lm
    from lstmkit.tasks.common import task_config

    cfg = task_config(args.model)
    if cfg["task"] != "lm":
        raise UserError(f"--model={args.model!r} holds a {cfg['task']!r} model; generate needs one written by "
                        f"`lstmkit train lm`")
    if args.length < 0:
        raise UserError(f"--length={args.length} must be >= 0")
    model, vocab, tok = lm.load(args.model)
    prompt = args.prompt if args.prompt is not None else ""
    ids = vocab.encode(tok(prompt))
    start = vocab.stoi.get("\n", vocab.unk_id) if tok.level == "char" else vocab.stoi.get(".", vocab.unk_id)
    if not ids:
        ids = [start]
    sep = "" if tok.level == "char" else " "
    sys.stdout.write(prompt)
    sys.stdout.flush()
    first = [True]

    def emit(i: int) -> None:
        piece = vocab.itos[i]
        sys.stdout.write(piece if (first[0] and not prompt) else sep + piece)
        first[0] = False
        sys.stdout.flush()

    generate_ids(model, ids, args.length, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                 seed=args.seed, on_token=emit)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0
