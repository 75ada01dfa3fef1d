import collections

import pytest

from lsgbench.errors import ConfigError
from lsgbench.synthetic import FILLER_WORDS, TOPIC_WORDS, extract_rows, keys_rows

KEYS = dict(label_names=["amber", "cobalt", "violet"], doc_words=400, num_keys=3, num_distractors=2,
            key_start=0.5, seed=7)
EXTRACT = dict(doc_sentences=40, num_selected=3, num_topics=4, key_start=0.5, seed=7)


def test_keys_generator_is_deterministic_by_seed_and_split():
    assert keys_rows("train", 20, **KEYS) == keys_rows("train", 20, **KEYS)
    assert keys_rows("train", 20, **KEYS) != keys_rows("test", 20, **KEYS)
    assert keys_rows("train", 20, **KEYS) != keys_rows("train", 20, **{**KEYS, "seed": 8})


def test_keys_label_is_the_planted_majority_and_lies_in_the_late_span():
    rows = keys_rows("train", 60, **KEYS)
    assert collections.Counter(r["label"] for r in rows) == {"amber": 20, "cobalt": 20, "violet": 20}
    for row in rows:
        words = [w for w in row["text"].split() if w != "."]
        assert len(words) == 400
        planted = [(i, w) for i, w in enumerate(words) if w in KEYS["label_names"]]
        counts = collections.Counter(w for _, w in planted)
        assert counts[row["label"]] == 3 and sum(counts.values()) == 5
        assert counts.most_common(1)[0][0] == row["label"]
        assert min(i for i, _ in planted) >= 200  # nothing planted before key_start
        assert all(w in FILLER_WORDS for w in words if w not in KEYS["label_names"])


def test_extract_target_is_exactly_the_sentences_on_the_named_topic():
    rows = extract_rows("test", 15, **EXTRACT)
    assert rows == extract_rows("test", 15, **EXTRACT)
    for row in rows:
        header, *sentences = row["article"].split("\n")
        topic = header.split()[3]
        assert topic in TOPIC_WORDS[:4]
        chosen = [i for i, s in enumerate(sentences) if topic in s.split()]
        assert len(chosen) == 3 and min(chosen) >= 20
        assert row["abstract"] == "\n".join(sentences[i] for i in chosen)
        assert all(len([w for w in s.split() if w in TOPIC_WORDS]) == 1 for s in sentences)


@pytest.mark.parametrize("knobs, message", [
    (dict(num_distractors=3), "num_distractors=3"),
    (dict(key_start=1.0), "key_start=1.0"),
    (dict(doc_words=10, num_keys=8, num_distractors=0), "do not fit"),
    (dict(label_names=["only"]), "at least 2 labels"),
])
def test_keys_generator_rejects_impossible_knobs(knobs, message):
    with pytest.raises(ConfigError, match=message):
        keys_rows("train", 2, **{**KEYS, **knobs})


def test_extract_generator_rejects_impossible_knobs():
    with pytest.raises(ConfigError, match="num_selected=30"):
        extract_rows("train", 2, **{**EXTRACT, "num_selected": 30})
    with pytest.raises(ConfigError, match="num_topics=1"):
        extract_rows("train", 2, **{**EXTRACT, "num_topics": 1})


def test_span_rows_plant_one_fact_per_name_and_ask_one_of_them():
    from lsgbench.synthetic import CODES, NAMES, span_rows

    rows = span_rows("train", 40, doc_words=200, num_facts=4, key_start=0.5, seed=3)
    assert rows == span_rows("train", 40, doc_words=200, num_facts=4, key_start=0.5, seed=3)  # deterministic
    for row in rows:
        context, (answer,), (start,) = row["context"], row["answers"]["text"], row["answers"]["answer_start"]
        asked = row["question"].split()[-2]
        first, last = answer.split()
        assert context[start:start + len(answer)] == answer and first in CODES[asked][:4] and last in CODES[asked][4:]
        facts = [n for n in NAMES if any(f" is {a} {b} ." in context for a in CODES[n][:4] for b in CODES[n][4:])]
        assert len(facts) == 4 and asked in facts
        before = context[:start].split()
        assert len(before) >= 100 + 3  # planted after key_start x doc_words = 100 filler words (and ". the code is")
    assert len({row["question"] for row in rows}) > 4  # the asked name varies
