"""What a task kind is: everything that depends on whether a task classifies or generates.

The pipeline, data loading, training, evaluation and the model builder call these methods and
never branch on `task.kind`. A new kind (question answering, language modelling) is a new
subclass in this package, listed in `KINDS`, plus its conf/task/<kind>.yaml base.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..record import write_json_atomic


@dataclass(frozen=True)
class Metric:
    """A metric a kind computes: whether higher is better (None: neither, e.g. a length), and its unit."""
    name: str
    higher_is_better: bool | None = True
    unit: str = "0-100"


class TaskKind:
    name: str
    text_column: str    # the input column of the unified local schema (the document)
    target_column: str  # the target column
    pair_key: str | None = None  # the task key naming a short text read before the document (None: none)
    METRICS: tuple[Metric, ...]  # the metrics it computes (task.metrics chooses among them)
    generates = False   # evaluation generates text (and reports generation speed)

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.METRICS)

    def pair_column(self, task) -> str | None:
        """The column of the short text read before each document (`task.<pair_key>`), or None."""
        return task.get(self.pair_key) if self.pair_key else None

    def columns(self, task) -> tuple[str, ...]:
        """The columns of the unified local schema a task's rows hold (besides the id)."""
        pair = self.pair_column(task)
        return (self.text_column, *([pair] if pair else []), self.target_column)

    def inputs(self, rows: list[dict], task) -> tuple[list[str] | None, list[str]]:
        """(the short texts read first, or None; the documents): the tokenizer truncates the documents only."""
        pair = self.pair_column(task)
        return ([r[pair] for r in rows] if pair else None), [r[self.text_column] for r in rows]

    # ------------------------------------------------------------------ data
    def check(self, task) -> list[str]:
        """What is wrong with this kind's task settings (checked before any data is read)."""
        return []

    def content(self, row: dict, task) -> str:
        """What an example asks of the model, whitespace collapsed: two examples with the same content are
        the same question, whatever their ids or targets (an evaluation example's content must not be in
        training). With a pair, the short text and the document together."""
        pair = self.pair_column(task)
        text = f"{row[pair]} {row[self.text_column]}" if pair else row[self.text_column]
        return " ".join(text.split())

    def target(self, value, task, where: str, example_id: str):
        """A row's target in the form training uses, or a ConfigError that names the example."""
        raise NotImplementedError

    def max_target_length(self, task) -> int | None:
        """The longest target in tokens (longer ones are cut), or None for a kind without text targets."""
        return None

    def tokenizer_texts(self, rows: list[dict], task) -> list[str]:
        """The text a tokenizer trained for this task learns from."""
        firsts, texts = self.inputs(rows, task)
        return (firsts or []) + texts

    def encode_targets(self, tokenizer, rows: list[dict], task) -> tuple[list, list[int] | None]:
        """(targets as the model trains on them, their token lengths before truncation or None)."""
        raise NotImplementedError

    def pad_targets(self, targets: list) -> torch.Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------------ model
    def head(self, family):
        """The family's model class for this kind (`Family.heads`), or None."""
        return family.heads.get(self.name)

    def random_config(self, task, tokenizer) -> dict:
        """Config fields of a random-init model for this kind."""
        return {}

    def pretrained_config(self, config, task, checkpoint: str) -> dict:
        """Adapt a loaded checkpoint config in place; returns extra from_pretrained arguments."""
        return {}

    def prepare(self, model, tokenizer, task) -> None:
        """Last settings on a built model (generation settings)."""

    # ------------------------------------------------------------------ evaluation
    def predict(self, model, batch: dict, tokenizer) -> tuple[list, int]:
        """(predictions for a batch, tokens generated)."""
        raise NotImplementedError

    def metrics(self, predictions: list, targets: list, generated_tokens: int, task) -> dict[str, float]:
        raise NotImplementedError

    def provenance(self, task) -> dict:
        """How this kind's metrics were computed, for the record (e.g. ROUGE-Lsum's sentence splitter)."""
        return {}

    def readable(self, values: list, task) -> list:
        """Predictions or targets as a person reads them in predictions.json."""
        return values

    def write_predictions(self, path: Path, ids: list, predictions: list, targets: list, task) -> None:
        write_json_atomic(path, {"ids": ids, "predictions": self.readable(predictions, task),
                                 "targets": self.readable(targets, task)})
