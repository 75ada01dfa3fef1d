"""Task metrics: accuracy and F1 for classification, ROUGE (x100, stemmed) for summarization."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


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


def sentence_lines(text: str) -> str:
    """One sentence per line, as rougeLsum expects; text that already has line breaks keeps them."""
    text = text.strip()
    if "\n" in text:
        return "\n".join(line.strip() for line in text.splitlines() if line.strip())
    return "\n".join(_SENTENCE_END.split(text))


def rouge_metrics(predictions: list[str], targets: list[str]) -> dict[str, float]:
    """Mean F-measure x100 of ROUGE-1/2/L/Lsum with the Porter stemmer (rouge_score, offline)."""
    from rouge_score import rouge_scorer

    if len(predictions) != len(targets) or not targets:
        raise ValueError(f"need equal, non-zero numbers of predictions and targets, got {len(predictions)} and {len(targets)}")
    keys = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(keys, use_stemmer=True)
    totals = dict.fromkeys(keys, 0.0)
    for pred, target in zip(predictions, targets):
        scores = scorer.score(sentence_lines(target), sentence_lines(pred))
        for k in keys:
            totals[k] += scores[k].fmeasure
    return {k: 100.0 * v / len(targets) for k, v in totals.items()}
