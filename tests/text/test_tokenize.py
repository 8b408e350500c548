"""Tokenisers, Vocab, strict UTF-8 reading, fortune/CSV readers: against hand-written expectations."""
import json

import pytest

from lstmkit.data.text import read_csv_texts, read_fortune_dir, read_text, read_unlabelled, split_fortunes
from lstmkit.data.tokenize import PAD, UNK, Tokenizer, Vocab, char_tokenize, word_tokenize
from lstmkit.errors import UserError


def test_char_round_trip_unicode_combining_and_emoji():
    text = "Cafe\u0301 na\u00efve \U0001F600 \u4e2d\u6587\n\tend"
    toks = char_tokenize(text)
    assert "".join(toks) == text
    assert toks[3:5] == ["e", "\u0301"]  # combining acute accent is its own code point token
    assert "\U0001F600" in toks  # the emoji is one token, not two surrogates
    v = Vocab.build([toks])
    assert Tokenizer("char").detokenize(v.decode(v.encode(toks))) == text


def test_word_tokenizer_words_punctuation_lowercase():
    assert word_tokenize("Don't panic, Arthur!") == ["Don't", "panic", ",", "Arthur", "!"]
    assert word_tokenize("Hello  WORLD... 42x", lower=True) == ["hello", "world", ".", ".", ".", "42x"]
    assert word_tokenize("Ünïcode café \u00e9t\u00e9") == ["Ünïcode", "café", "été"]
    assert Tokenizer("word", lower=True)("A b") == ["a", "b"]


def test_vocab_specials_unknown_min_freq_max_size():
    v = Vocab.build([["a", "b", "a", "c", "c", "c"]], min_freq=2)
    assert v.itos == [PAD, UNK, "c", "a"]
    assert v.encode(["a", "zzz", "b"]) == [3, 1, 1]
    assert Vocab.build([["x", "y", "y", "z", "z", "z"]], max_size=2).itos == [PAD, UNK, "z", "y"]


def test_vocab_json_round_trip(tmp_path):
    v = Vocab.build([list("héllo \U0001F600")])
    v.save(tmp_path / "v.json")
    w = Vocab.load(tmp_path / "v.json")
    assert w.itos == v.itos and w.stoi == v.stoi
    assert json.loads((tmp_path / "v.json").read_text(encoding="utf-8"))["tokens"][:2] == [PAD, UNK]


def test_invalid_utf8_reports_file_and_byte_offset(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes("héllo".encode() + b"\xff rest")  # h + é (2 bytes) + llo = 6 bytes before the bad byte
    with pytest.raises(UserError, match=r"bad\.txt: invalid UTF-8 at byte offset 6"):
        read_text(p)


def test_fortune_split_and_dir_labels(tmp_path):
    assert split_fortunes("one\n%\ntwo\n  lines\n%\n%\n") == ["one", "two\n  lines"]
    (tmp_path / "a").write_text("x\n%\ny\n%\n", encoding="utf-8")
    (tmp_path / "b").write_text("z\n", encoding="utf-8")
    (tmp_path / "COPYRIGHT").write_text("not data\n", encoding="utf-8")
    assert read_fortune_dir(tmp_path) == (["x", "y", "z"], ["a", "a", "b"])


def test_csv_columns_and_errors(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('body,cls\n"hi, there",pos\nbye,neg\n', encoding="utf-8")
    assert read_csv_texts(p, "body", "cls") == (["hi, there", "bye"], ["pos", "neg"])
    with pytest.raises(UserError, match="--text-col='text' is not a column"):
        read_csv_texts(p, "text", "cls")
    q = tmp_path / "lines.txt"
    q.write_text("first text\n\nsecond\n", encoding="utf-8")
    assert read_unlabelled(q) == ["first text", "second"]
