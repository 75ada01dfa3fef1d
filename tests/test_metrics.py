import pytest

from lsgbench.metrics import classification_metrics, rouge_metrics, sentence_lines


def test_classification_metrics_match_hand_computed_values():
    # per class: 0 -> F1 1, 1 -> tp1 fp1 fn0 = 2/3, 2 -> tp1 fp0 fn1 = 2/3
    m = classification_metrics([0, 1, 1, 2], [0, 1, 2, 2])
    assert m["accuracy"] == pytest.approx(75.0)
    assert m["f1_micro"] == pytest.approx(75.0)
    assert m["f1_macro"] == pytest.approx(100 * (1 + 2 / 3 + 2 / 3) / 3)
    assert m["f1_binary"] == pytest.approx(100 * 2 / 3)


def test_macro_f1_counts_a_never_predicted_class_as_zero():
    m = classification_metrics([0, 0, 0, 0], [0, 0, 1, 1])
    assert m["accuracy"] == pytest.approx(50.0)
    assert m["f1_macro"] == pytest.approx(100 * (2 * 2 / (2 * 2 + 2 + 0)) / 2)  # class 0: 2/3, class 1: 0
    assert m["f1_binary"] == 0.0


def test_classification_metrics_reject_mismatched_lengths():
    with pytest.raises(ValueError, match="equal"):
        classification_metrics([0, 1], [0])


def test_rouge_matches_hand_computed_ngram_overlap():
    m = rouge_metrics(["the cat sat on the mat"], ["the cat sat on a mat"])
    assert m["rouge1"] == pytest.approx(100 * 5 / 6)  # 5 clipped unigram matches of 6
    assert m["rouge2"] == pytest.approx(60.0)  # the cat, cat sat, sat on: 3 of 5 bigrams
    assert m["rougeL"] == pytest.approx(100 * 5 / 6)  # LCS "the cat sat on mat"


def test_rouge_lsum_scores_sentence_by_sentence_while_rouge_l_does_not():
    m = rouge_metrics(["alpha beta. gamma delta."], ["gamma delta.\nalpha beta."])
    assert m["rougeL"] == pytest.approx(50.0)  # LCS of the flat texts is 2 of 4 tokens
    assert m["rougeLsum"] == pytest.approx(100.0)  # each reference sentence is found whole
    assert m["rouge1"] == pytest.approx(100.0)


def test_rouge_uses_the_porter_stemmer():
    assert rouge_metrics(["running cats"], ["run cat"])["rouge1"] == pytest.approx(100.0)


def test_sentence_lines_splits_on_end_punctuation_and_keeps_existing_lines():
    assert sentence_lines("One here. Two there! Three?") == "One here.\nTwo there!\nThree?"
    assert sentence_lines("a b .\n c d .\n") == "a b .\nc d ."
