"""Exact match and token F1 of extractive QA: hand-computed values, and agreement with an independent
re-implementation of the official SQuAD v1.1 evaluation's rules on many generated cases."""

import random
import string

import pytest

from lsgbench.metrics import answer_f1, normalize_answer, qa_metrics


def test_normalisation_by_hand():
    assert normalize_answer("The  Eiffel-Tower, in PARIS!") == "eiffeltower in paris"  # hyphen removed, not split
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("theatre another") == "theatre another"  # articles only as whole words
    assert normalize_answer("Über  the\tcafé’s") == "über café’s"  # ’ is not ASCII punctuation: it stays
    assert normalize_answer(" . , ") == ""


def test_f1_and_exact_match_by_hand():
    # "the cat sat on the mat" -> cat sat on mat (4 tokens); "a cat on a mat today" -> cat on mat today (4)
    assert answer_f1("the cat sat on the mat", "a cat on a mat today") == pytest.approx(2 * 0.75 * 0.75 / 1.5)
    assert answer_f1("Paris", "paris.") == 1.0 and answer_f1("London", "Paris") == 0.0
    assert answer_f1("", "") == 1.0 and answer_f1("", "Paris") == 0.0 and answer_f1("the", "Paris") == 0.0
    # repeated tokens count as often as both have them: pred 2 x "new", gold 1 x -> 1 common of 3 and 2
    assert answer_f1("new new york", "new york") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    scores = qa_metrics(["Denver Broncos", "the 1990s", "nothing"],
                        [["Denver Broncos", "Broncos"], ["1990s", "the nineties"], ["Santa Clara"]])
    assert scores["exact_match"] == pytest.approx(100 * 2 / 3) and scores["f1"] == pytest.approx(100 * 2 / 3)
    # the best gold counts: "Broncos" against {"Denver Broncos": F1 2/3, "Broncos": 1}
    assert qa_metrics(["Broncos"], [["Denver Broncos", "Broncos"]]) == {"exact_match": 100.0, "f1": 100.0}
    assert qa_metrics(["Denver"], [["Denver Broncos"]]) == {"exact_match": 0.0, "f1": pytest.approx(100 * 2 / 3)}


# ---------------------------------------------------------------- an independent oracle of the official rules

def _oracle_normalize(text: str) -> str:
    """The official rules, written another way: characters scanned one by one; an article is removed where it
    stands between word boundaries (a word character: alphanumeric or underscore, as Python's re has it)."""
    lowered = text.lower()
    kept = "".join(ch for ch in lowered if ch not in set(string.punctuation))
    is_word = [c.isalnum() or c == "_" for c in kept]
    out, i = [], 0
    while i < len(kept):
        for article in ("the", "an", "a"):  # longest first is irrelevant: a boundary must follow
            end = i + len(article)
            if kept.startswith(article, i) and (i == 0 or not is_word[i - 1]) and (end == len(kept) or not is_word[end]):
                out.append(" ")
                i = end
                break
        else:
            out.append(kept[i])
            i += 1
    return " ".join("".join(out).split())


def _oracle_f1(prediction: str, gold: str) -> float:
    p, g = _oracle_normalize(prediction).split(), _oracle_normalize(gold).split()
    if not p or not g:
        return 1.0 if p == g else 0.0
    remaining, common = list(g), 0
    for token in p:
        if token in remaining:
            remaining.remove(token)
            common += 1
    return 0.0 if common == 0 else 2 * common / (len(p) + len(g))  # = 2PR/(P+R)


WORDS = ["the", "The", "a", "an", "An", "cat", "Paris", "new", "York", "café", "Über", "北京", "naïve", "1990s",
         "theatre", "another", "a.b", "U.S.", "e-mail", "–", "’s", "_a_", "x", "ANA", "then"]
GLUE = [" ", "  ", "\t", ", ", ". ", "!", "-", "'", '"', "(", ")", "’", " the ", " a ", ""]


def _phrase(rng: random.Random) -> str:
    return "".join(rng.choice(WORDS) + rng.choice(GLUE) for _ in range(rng.randint(0, 5))).strip(" ") \
        if rng.random() > 0.05 else ""


def test_metrics_equal_the_oracle_on_generated_cases():
    rng = random.Random(0)
    cases = [(_phrase(rng), [_phrase(rng) for _ in range(rng.randint(1, 4))]) for _ in range(600)]
    for prediction, golds in cases:
        assert normalize_answer(prediction) == _oracle_normalize(prediction), prediction
        for gold in golds:
            assert answer_f1(prediction, gold) == pytest.approx(_oracle_f1(prediction, gold)), (prediction, gold)
    predictions, golds = zip(*cases)
    scores = qa_metrics(list(predictions), list(golds))
    exact = [max(float(_oracle_normalize(p) == _oracle_normalize(g)) for g in gs) for p, gs in cases]
    f1 = [max(_oracle_f1(p, g) for g in gs) for p, gs in cases]
    assert scores["exact_match"] == pytest.approx(100 * sum(exact) / len(cases))
    assert scores["f1"] == pytest.approx(100 * sum(f1) / len(cases))
    assert 0 < sum(exact) < len(cases) and 0 < sum(f1) < len(cases)  # the cases exercise both outcomes
