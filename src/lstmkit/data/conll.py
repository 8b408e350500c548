"""CoNLL files (one token per line, tag in the last column, blank lines between sentences) and chunk scoring.

Reading: columns are split on whitespace; the token is the first column and the tag the last; ``-DOCSTART-``
lines are ignored; a file of one-column lines is a token-only file (for prediction).

Scoring follows ``conlleval`` (the CoNLL-2000/2003 evaluation script) for IOB1, IOB2 (BIO) tags:
:func:`chunks` finds entity spans with conlleval's start/end rules, so an ``I-X`` that does not continue an
``X`` chunk (after ``O``, after another type, at the start of a sentence) *starts* a new chunk, and a ``B-X``
always starts one. A predicted entity counts as correct only if its start, end and type all equal a gold
entity's (exact span match); partial overlaps count as one false positive and one false negative.

>>> chunks(["B-PER", "I-PER", "O", "I-LOC", "B-LOC"])
[('PER', 0, 2), ('LOC', 3, 4), ('LOC', 4, 5)]
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from lstmkit.data.text import read_text
from lstmkit.errors import UserError

Sentence = Tuple[List[str], List[str]]


def parse_conll(text: str, name: str = "<string>", require_tags: bool = True) -> List[Sentence]:
    """Sentences ``(tokens, tags)`` of CoNLL text (tags empty strings when ``require_tags`` is False and the
    line has one column). UserError naming the line when a tagged file has a line with one column."""
    sents: List[Sentence] = []
    toks: List[str] = []
    tags: List[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        cols = line.split()
        if not cols:
            if toks:
                sents.append((toks, tags))
                toks, tags = [], []
            continue
        if cols[0] == "-DOCSTART-":
            continue
        if len(cols) < 2:
            if require_tags:
                raise UserError(f"{name}: line {lineno} has one column {line.strip()!r}; expected 'TOKEN ... TAG'")
            toks.append(cols[0])
            tags.append("")
        else:
            toks.append(cols[0])
            tags.append(cols[-1])
    if toks:
        sents.append((toks, tags))
    return sents


def read_conll(path, require_tags: bool = True) -> List[Sentence]:
    """Sentences of a CoNLL file (see :func:`parse_conll`); UserError when it holds none."""
    sents = parse_conll(read_text(path), str(path), require_tags)
    if not sents:
        raise UserError(f"--data={str(path)!r} holds no sentences (CoNLL: one token per line, tag in the last "
                        f"column, blank lines between sentences)")
    return sents


def format_conll(sentences: Sequence[Tuple[Sequence[str], Sequence[str]]]) -> str:
    """CoNLL text: ``token<TAB>tag`` lines, a blank line after each sentence."""
    out = []
    for toks, tags in sentences:
        out += [f"{t}\t{g}" for t, g in zip(toks, tags)] + [""]
    return "\n".join(out) + ("\n" if out else "")


def _split_tag(tag: str) -> Tuple[str, str]:
    """(prefix, type): "B-LOC" -> ("B", "LOC"); "O" (or an empty tag) -> ("O", ""); "LOC" -> ("I", "LOC")."""
    if tag in ("O", "", "-X-"):
        return "O", ""
    if len(tag) > 1 and tag[1] in "-_" and tag[0] in "BIES":
        return tag[0], tag[2:]
    return "I", tag


def chunks(tags: Sequence[str]) -> List[Tuple[str, int, int]]:
    """Entity spans ``(type, start, end)`` (end exclusive) of one sentence's tags, by conlleval's rules."""
    out: List[Tuple[str, int, int]] = []
    prev, prev_type, start = "O", "", None
    for i, tag in enumerate(list(tags) + ["O"]):
        cur, typ = _split_tag(tag)
        end = (prev in "BI" and cur in "BO") or (prev in "ES") or (prev != "O" and prev_type != typ)
        if prev == "E" and cur in "I":
            end = True
        if start is not None and end:
            out.append((prev_type, start, i))
            start = None
        begin = (cur in "BS") or (prev in "OES" and cur in "IE") or (cur != "O" and prev_type != typ)
        if begin and cur != "O":
            start = i
        prev, prev_type = cur, typ
    return out


def chunk_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> Dict[str, object]:
    """conlleval's figures over sentences of gold and predicted tags.

    Returns precision, recall, f1 (entity level, exact span match; 0 when undefined), token accuracy (all
    tokens, ``O`` included), the chunk counts and per-type precision/recall/f1.
    """
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} sentences but pred has {len(pred)}")
    n_gold = n_pred = n_ok = tok_ok = toks = 0
    per: Dict[str, List[int]] = {}
    for g, p in zip(gold, pred):
        if len(g) != len(p):
            raise ValueError(f"sentence lengths differ: gold {len(g)}, pred {len(p)}")
        gs, ps = set(chunks(g)), set(chunks(p))
        n_gold, n_pred, n_ok = n_gold + len(gs), n_pred + len(ps), n_ok + len(gs & ps)
        for c in gs:
            per.setdefault(c[0], [0, 0, 0])[0] += 1
        for c in ps:
            per.setdefault(c[0], [0, 0, 0])[1] += 1
        for c in gs & ps:
            per[c[0]][2] += 1
        tok_ok += sum(a == b for a, b in zip(g, p))
        toks += len(g)

    def prf(ng, np_, ok):
        pr = ok / np_ if np_ else 0.0
        rc = ok / ng if ng else 0.0
        return pr, rc, (2 * pr * rc / (pr + rc) if pr + rc else 0.0)

    p, r, f = prf(n_gold, n_pred, n_ok)
    return {"precision": p, "recall": r, "f1": f, "token_accuracy": tok_ok / toks if toks else 0.0,
            "gold_chunks": n_gold, "pred_chunks": n_pred, "correct_chunks": n_ok,
            "per_type": {t: dict(zip(("precision", "recall", "f1"), prf(*v))) for t, v in sorted(per.items())}}


def tag_scheme(tags: Sequence[str]) -> Optional[str]:
    """"BIO" when tags look like IOB1/IOB2 (``B-``/``I-`` prefixes and ``O``), else None (plain labels)."""
    prefixed = [t for t in tags if t != "O"]
    if prefixed and all(len(t) > 2 and t[0] in "BI" and t[1] == "-" for t in prefixed):
        return "BIO"
    return None


def write_conll(path: Optional[str], sentences) -> None:
    """Write :func:`format_conll` text to ``path`` (stdout when None)."""
    text = format_conll(sentences)
    if path:
        Path(path).write_text(text, encoding="utf-8")
    else:
        import sys

        sys.stdout.write(text)
