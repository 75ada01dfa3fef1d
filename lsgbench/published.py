"""Published reference scores, read from the task cards (`tasks/<task>/README.md`).

A card's reference table sits under a heading that starts with "## Published reference scores":
columns `model` (the paper's name for it), `lsgbench` (the lsgbench model it is the reference
for, or `—`), one column per metric under lsgbench's metric name, and `source`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from .config import model_names, shipped_dir

HEADING = "## Published reference scores"
NONE = ("—", "-", "")


@dataclass(frozen=True)
class Reference:
    score: str   # as published, e.g. "95.2 ± 0.2"
    paper_model: str
    source: str


def cards_dir() -> Path:
    return shipped_dir("tasks")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def identity(model: str, attention_type: str | None = None) -> tuple[str, str]:
    """What a model is, for finding its published scores: (backbone, attention). `lsg_bart` and
    `bart` with attention=lsg are the same; `roberta` is full attention unless attention_type says."""
    backbone, default = model_names().get(model, (model, "full"))
    return backbone, attention_type or default


@functools.cache
def published(task: str) -> dict[tuple[tuple[str, str], str], Reference]:
    """{(model identity, metric): Reference} from the task's card; the first row wins; {} without a card."""
    card = cards_dir() / task / "README.md"
    if not card.is_file():
        return {}
    lines = card.read_text().splitlines()
    refs: dict[tuple[str, str], Reference] = {}
    for i, line in enumerate(lines):
        if not line.startswith(HEADING):
            continue
        table = []
        for x in lines[i + 1:]:
            if x.startswith("#") or (table and not x.startswith("|")):  # the section or the table ends
                break
            if x.startswith("|"):
                table.append(_cells(x))
        if len(table) < 3:  # no rows under the header and its |---| rule
            continue
        header, body = table[0], table[2:]
        metrics = header[2:-1]
        for row in body:
            paper_model, model, scores, source = row[0], row[1], row[2:-1], row[-1]
            if model in NONE:
                continue
            for metric, score in zip(metrics, scores):
                if score not in NONE:
                    refs.setdefault((identity(model), metric), Reference(score, paper_model, source))
    return refs
