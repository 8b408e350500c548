"""CoNLL reading and conlleval-style chunk scoring against hand-counted spans."""
import pytest

from lstmkit.data.conll import chunk_scores, chunks, parse_conll
from lstmkit.errors import UserError


def test_parse_docstart_columns_blank_lines():
    text = "-DOCSTART- -X- O\n\nEU NNP B-ORG\nrejects VBZ O\n\n\nPeter B-PER\nBlack I-PER\n"
    assert parse_conll(text) == [(["EU", "rejects"], ["B-ORG", "O"]), (["Peter", "Black"], ["B-PER", "I-PER"])]
    with pytest.raises(UserError, match="line 2 has one column"):
        parse_conll("a O\nb\n", "f.conll")
    assert parse_conll("a\nb\n\nc\n", require_tags=False) == [(["a", "b"], ["", ""]), (["c"], [""])]


def test_chunks_conlleval_rules():
    assert chunks(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 2), ("LOC", 3, 4)]
    assert chunks(["I-LOC", "I-LOC", "O"]) == [("LOC", 0, 2)]  # I- without B- starts a chunk
    assert chunks(["O", "I-PER"]) == [("PER", 1, 2)]
    assert chunks(["B-PER", "I-LOC"]) == [("PER", 0, 1), ("LOC", 1, 2)]  # type change: new chunk
    assert chunks(["B-LOC", "B-LOC", "I-LOC"]) == [("LOC", 0, 1), ("LOC", 1, 3)]
    assert chunks(["I-ORG", "B-ORG"]) == [("ORG", 0, 1), ("ORG", 1, 2)]  # IOB1 style
    assert chunks(["O", "O"]) == []


def test_scores_hand_counted_with_partial_matches():
    gold = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "I-ORG", "I-ORG", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC", "O"],      # PER too short (partial: no credit), LOC exact
            ["B-ORG", "I-ORG", "I-ORG", "B-MISC"]]  # ORG exact, MISC spurious
    s = chunk_scores(gold, pred)
    # gold chunks: PER(0,2) LOC(3,4) ORG(0,3) = 3; predicted: PER(0,1) LOC ORG MISC = 4; correct: LOC, ORG = 2
    assert (s["gold_chunks"], s["pred_chunks"], s["correct_chunks"]) == (3, 4, 2)
    assert s["precision"] == pytest.approx(2 / 4) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert s["token_accuracy"] == pytest.approx(7 / 9)
    assert s["per_type"]["PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert s["per_type"]["LOC"]["f1"] == 1.0


def test_wrong_type_or_boundary_is_not_a_match():
    gold = [["B-LOC", "I-LOC", "O"]]
    for pred in (["B-PER", "I-PER", "O"], ["B-LOC", "I-LOC", "I-LOC"], ["O", "B-LOC", "O"]):
        assert chunk_scores(gold, [pred])["correct_chunks"] == 0
    assert chunk_scores(gold, [["I-LOC", "I-LOC", "O"]])["f1"] == 1.0  # same span by conlleval rules


def test_textclass_metrics_hand_counted():
    from lstmkit.tasks.textclass import classification_metrics

    m = classification_metrics([0, 0, 1, 2], [0, 1, 1, 2], ["a", "b", "c", "d"])
    assert m["accuracy"] == 0.75
    # per label present (a, b, c): F1 a = 2/3 (P 1, R 1/2), b = 2/3 (P 1/2, R 1), c = 1; label d absent
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert m["confusion_matrix"] == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
