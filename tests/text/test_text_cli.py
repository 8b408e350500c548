"""End-to-end `lstmkit train lm|textclass|tag`, generate, predict, evaluate on tiny data; error paths (exit 2)."""
import csv
import io
import json
import random
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from lstmkit.cli.main import main

DATA = Path(__file__).resolve().parents[1] / "data" / "fortunes_small"
FAST = ["--quiet", "--backend", "reference"]


def run(argv):
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(argv)
    return rc, buf.getvalue()


def test_lm_train_generate_evaluate(tmp_path):
    out = tmp_path / "lm"
    rc, _ = run(["train", "lm", "--data", str(DATA), "--hidden", "16", "--epochs", "1", "--batch-size", "16",
                 "--bptt", "20", "--out", str(out)] + FAST)
    assert rc == 0
    for f in ("config.json", "metrics.json", "report.md", "training_curves.png", "vocab.json", "model/config.json"):
        assert (out / f).exists(), f
    m = json.loads((out / "metrics.json").read_text())
    assert m["task"] == "lm" and 0 < m["test"]["bpc"] < 10 and m["baselines"]["xz"]["bpc"] > 0
    assert json.loads((out / "config.json").read_text())["task"] == "lm"
    rc, text = run(["generate", "--model", str(out), "--prompt", "The ", "--length", "25", "--temperature", "0"])
    assert rc == 0 and text.startswith("The ") and len(text) == len("The ") + 25 + 1
    rc2, text2 = run(["generate", "--model", str(out), "--prompt", "The ", "--length", "25", "--temperature", "0"])
    assert text2 == text  # greedy is deterministic
    rc, js = run(["evaluate", "--model", str(out), "--data", str(DATA / "food")])
    assert rc == 0 and json.loads(js)["bpc"] > 0


def test_textclass_train_predict_evaluate(tmp_path):
    out = tmp_path / "tc"
    rc, _ = run(["train", "textclass", "--data", str(DATA), "--hidden", "8", "--embed", "8", "--epochs", "2",
                 "--out", str(out)] + FAST)
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m) >= {"task", "test", "baselines"} and "tfidf_logreg" in m["baselines"]
    cm = m["test"]["confusion_matrix"]
    assert len(cm) == 3 and sum(map(sum, cm)) == m["test"]["n"] == 24  # 120 entries, 20% test
    assert m["test"]["labels"] == ["food", "law", "sports"]
    assert (out / "confusion_matrix.png").stat().st_size > 1000 and (out / "report.md").exists()
    lines = tmp_path / "in.txt"
    lines.write_text("I like to eat cheese\nthe judge and the lawyer\n", encoding="utf-8")
    pred = tmp_path / "pred.csv"
    rc, _ = run(["predict", "--model", str(out), "--data", str(lines), "--output", str(pred)])
    rows = list(csv.DictReader(pred.open(encoding="utf-8")))
    assert rc == 0 and [r["text"] for r in rows] == ["I like to eat cheese", "the judge and the lawyer"]
    assert all(r["label"] in ("food", "law", "sports") for r in rows)
    data_csv = tmp_path / "lab.csv"
    data_csv.write_text("text,label\ncheese please,food\nsue them,law\n", encoding="utf-8")
    rc, js = run(["evaluate", "--model", str(out), "--data", str(data_csv)])
    assert rc == 0 and json.loads(js)["n"] == 2


def _loc_corpus(path, n, seed):
    """Capitalised words right after "in" are B-LOC (a following capitalised word I-LOC); the same city
    names elsewhere are O, so a word-identity baseline cannot solve it."""
    r = random.Random(seed)
    cities = ["Paris", "London", "Berlin", "Rome", "Madrid", "Oslo", "Vienna", "Lisbon"]
    sents = []
    for _ in range(n):
        if r.random() < 0.5:
            toks = [r.choice(["Anna", "Bob", "Paris", "Rome"]), "lives", "in", r.choice(cities)]
            if r.random() < 0.3:
                toks.append("City")
        else:
            toks = [r.choice(cities), "likes", r.choice(["cheese", "Oslo", "Berlin"])]
        toks.append(".")
        tags = []
        for i, t in enumerate(toks):
            if i > 0 and toks[i - 1] == "in":
                tags.append("B-LOC")
            elif i > 1 and toks[i - 2] == "in" and t[0].isupper() and t != ".":
                tags.append("I-LOC")
            else:
                tags.append("O")
        sents.append("\n".join(f"{t} {g}" for t, g in zip(toks, tags)))
    path.write_text("-DOCSTART- O\n\n" + "\n\n".join(sents) + "\n", encoding="utf-8")


def test_tag_learns_rule_entities(tmp_path):
    train, test = tmp_path / "train.conll", tmp_path / "test.conll"
    _loc_corpus(train, 150, 0)
    _loc_corpus(test, 60, 1)
    out = tmp_path / "tag"
    rc, _ = run(["train", "tag", "--data", str(train), "--test-data", str(test), "--no-char-features",
                 "--hidden", "16", "--embed", "16", "--epochs", "8", "--batch-size", "8", "--lr", "0.01",
                 "--out", str(out)] + FAST)
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["test"]["f1"] >= 0.95
    assert m["test"]["f1"] > m["baselines"]["most_frequent_tag"]["f1"] + 0.1
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("Bob\nlives\nin\nRome\n.\n\nRome\nlikes\ncheese\n", encoding="utf-8")
    rc, text = run(["predict", "--model", str(out), "--data", str(tokens)])
    assert rc == 0
    assert text.split("\n")[:5] == ["Bob\tO", "lives\tO", "in\tO", "Rome\tB-LOC", ".\tO"]
    assert text.split("\n")[6] == "Rome\tO"


def test_tag_char_features_path(tmp_path):
    train = tmp_path / "t.conll"
    _loc_corpus(train, 40, 2)
    out = tmp_path / "tagc"
    rc, _ = run(["train", "tag", "--data", str(train), "--hidden", "8", "--embed", "8", "--epochs", "1",
                 "--out", str(out)] + FAST)
    assert rc == 0 and (out / "char_vocab.json").exists()
    rc, js = run(["evaluate", "--model", str(out), "--data", str(train)])
    assert rc == 0 and 0 <= json.loads(js)["token_accuracy"] <= 1


@pytest.mark.parametrize("argv, message", [
    (["train", "lm", "--data", "{missing}"], "does not exist"),
    (["train", "lm", "--data", "{bad}"], "invalid UTF-8 at byte offset 3"),
    (["train", "textclass", "--data", "{csv}", "--text-col", "body"], "--text-col='body' is not a column"),
    (["train", "tag", "--data", "{bad_conll}"], "line 1 has one column"),
    (["train", "lm", "--data", "{csv}", "--hidden", "0"], "--hidden=0"),
])
def test_errors_exit_2_and_leave_no_dir(tmp_path, capsys, argv, message):
    (tmp_path / "bad.txt").write_bytes(b"abc\xc3(")
    (tmp_path / "d.csv").write_text("text,label\nhi,a\n", encoding="utf-8")
    (tmp_path / "b.conll").write_text("word\n", encoding="utf-8")
    subs = {"{missing}": str(tmp_path / "nope.txt"), "{bad}": str(tmp_path / "bad.txt"),
            "{csv}": str(tmp_path / "d.csv"), "{bad_conll}": str(tmp_path / "b.conll")}
    out = tmp_path / "out"
    rc = main([subs.get(a, a) for a in argv] + ["--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_generate_rejects_other_task_dir(tmp_path, capsys):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text('{"task": "textclass"}')
    assert main(["generate", "--model", str(d)]) == 2
    assert "generate needs one written by `lstmkit train lm`" in capsys.readouterr().err


def test_textclass_sorted_csv_with_test_data_validates_on_all_labels(tmp_path):
    """A training CSV sorted by label must not leave a label out of the fitted part (validation is random)."""
    rows = ["text,label"] + [f"apple pie number {i},food" for i in range(36)] + \
           [f"judge ruling number {i},law" for i in range(4)]  # unshuffled, the last 10% would be all "law"
    (tmp_path / "tr.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (tmp_path / "te.csv").write_text("text,label\napple pie,food\njudge ruling,law\n", encoding="utf-8")
    out = tmp_path / "tc"
    rc, _ = run(["train", "textclass", "--data", str(tmp_path / "tr.csv"), "--test-data", str(tmp_path / "te.csv"),
                 "--hidden", "8", "--embed", "8", "--epochs", "15", "--min-freq", "1", "--batch-size", "4", "--lr", "0.01",
                 "--out", str(out)] + FAST)
    m = json.loads((out / "metrics.json").read_text())
    assert rc == 0 and m["test"]["accuracy"] == 1.0 and m["data"]["validation"] == 4
