"""Tokenisers (character and word level) and a vocabulary mapping tokens to integer ids.

Character level: a token is one Unicode code point (so a combining accent is its own token and an emoji is
one token); ``detokenize`` joins them back exactly (a lossless round trip).

Word level: the regular expression :data:`WORD_PATTERN` splits text into runs of word characters (letters,
digits, underscore; an inner apostrophe kept, as in ``don't``) and single punctuation/symbol characters;
whitespace is dropped. ``lower=True`` lowercases first. ``detokenize`` joins with spaces (lossy).

>>> word_tokenize("Don't panic, Arthur!")
["Don't", 'panic', ',', 'Arthur', '!']

:class:`Vocab` reserves id 0 for ``<pad>`` and id 1 for ``<unk>``; unknown tokens map to ``<unk>``.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from lstmkit.errors import UserError

PAD, UNK = "<pad>", "<unk>"
WORD_PATTERN = re.compile(r"\w+(?:['\u2019]\w+)*|[^\w\s]")
LEVELS = ("char", "word")


def char_tokenize(text: str) -> List[str]:
    """One token per Unicode code point."""
    return list(text)


def word_tokenize(text: str, lower: bool = False) -> List[str]:
    """Words and punctuation marks (see :data:`WORD_PATTERN`), optionally lowercased."""
    return WORD_PATTERN.findall(text.lower() if lower else text)


class Tokenizer:
    """A tokeniser of a given ``level`` ("char" or "word"), with ``lower`` for word level.

    ``Tokenizer("word", lower=True)("Hi there!") == ["hi", "there", "!"]``.
    """

    def __init__(self, level: str = "char", lower: bool = False):
        if level not in LEVELS:
            raise UserError(f"--level={level!r} is not known; expected one of {LEVELS}")
        self.level = level
        self.lower = lower

    def __call__(self, text: str) -> List[str]:
        if self.level == "char":
            return char_tokenize(text.lower() if self.lower else text)
        return word_tokenize(text, self.lower)

    def detokenize(self, tokens: Sequence[str]) -> str:
        """Text from tokens: exact concatenation at char level, space-joined at word level."""
        return "".join(tokens) if self.level == "char" else " ".join(tokens)

    def to_dict(self) -> dict:
        return {"level": self.level, "lower": self.lower}

    @classmethod
    def from_dict(cls, d: dict) -> "Tokenizer":
        return cls(d.get("level", "char"), bool(d.get("lower", False)))


class Vocab:
    """Token <-> id mapping with ``<pad>`` = 0 and ``<unk>`` = 1.

    Build with :meth:`build` from token sequences (``min_freq``: drop rarer tokens; ``max_size``: keep the
    most frequent, ties broken by first appearance; both count the two special tokens out). Example::

        v = Vocab.build([["a", "b", "a"]], min_freq=2)   # tokens: <pad>, <unk>, a
        v.encode(["a", "z"]) == [2, 1]
    """

    def __init__(self, tokens: Iterable[str]):
        self.itos: List[str] = [PAD, UNK]
        for t in tokens:
            if t not in (PAD, UNK):
                self.itos.append(t)
        self.stoi: Dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("Vocab: tokens must be distinct")

    pad_id = 0
    unk_id = 1

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]], min_freq: int = 1, max_size: Optional[int] = None) -> "Vocab":
        """A vocabulary of the tokens in ``sequences`` seen at least ``min_freq`` times (at most ``max_size``)."""
        if min_freq < 1:
            raise ValueError(f"min_freq={min_freq} must be >= 1")
        counts: Counter = Counter()
        for seq in sequences:
            counts.update(seq)
        order = {t: i for i, t in enumerate(counts)}  # first appearance
        kept = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], order[t]))
        if max_size is not None:
            kept = kept[:max_size]
        return cls(kept)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: Sequence[str]) -> List[int]:
        """Ids of ``tokens`` (``<unk>`` for tokens not in the vocabulary)."""
        get = self.stoi.get
        return [get(t, 1) for t in tokens]

    def decode(self, ids: Iterable[int]) -> List[str]:
        """Tokens of ``ids``."""
        return [self.itos[int(i)] for i in ids]

    def to_dict(self) -> dict:
        return {"tokens": list(self.itos)}

    def save(self, path) -> None:
        """Write as JSON ``{"tokens": [...]}`` (id = position)."""
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, d: dict) -> "Vocab":
        toks = d.get("tokens") if isinstance(d, dict) else None
        if not isinstance(toks, list) or toks[:2] != [PAD, UNK]:
            raise UserError("vocabulary JSON must be {\"tokens\": [\"<pad>\", \"<unk>\", ...]}")
        return cls(toks[2:])

    @classmethod
    def load(cls, path) -> "Vocab":
        """Read a vocabulary written by :meth:`save`."""
        from lstmkit.tasks.common import read_json

        return cls.from_dict(read_json(path))
