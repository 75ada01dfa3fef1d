"""What a task kind is: everything that depends on whether a task classifies or generates.

The pipeline, data loading, training, evaluation and the model builder call these methods and
never branch on `task.kind`. A new kind (question answering, language modelling) is a new
subclass in this package, listed in `KINDS`, plus its conf/task/<kind>.yaml base.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ConfigError
from ..record import write_json_atomic


def check_room(tokenizer, firsts: list[str], rows: list[dict], column: str, max_length: int) -> None:
    """A ConfigError naming the first example whose short text leaves no room for its document."""
    room = max_length - tokenizer.num_special_tokens_to_add(pair=True)
    for row, ids in zip(rows, tokenizer(firsts, add_special_tokens=False, verbose=False)["input_ids"]):
        if len(ids) >= room:
            raise ConfigError(f"example {row['id']!r}: its {column!r} takes {len(ids)} tokens, which leaves no room "
                              f"for the document within the input length {max_length}; raise model.max_length or "
                              f"shorten it")


@dataclass(frozen=True)
class Metric:
    """A metric a kind computes: whether higher is better (None: neither, e.g. a length), its unit, and the
    decimals tables show."""
    name: str
    higher_is_better: bool | None = True
    unit: str = "0-100"
    digits: int = 2


class TaskKind:
    name: str
    text_column: str    # the input column of the unified local schema (the document)
    target_column: str | None  # the target column (None: the text is its own target, as in language modelling)
    pair_key: str | None = None  # the task key naming a short text read before the document (None: none)
    METRICS: tuple[Metric, ...]  # the metrics it computes (task.metrics chooses among them)
    generates = False   # evaluation generates text (and reports generation speed)
    saves_model = False  # a run keeps its trained model unless told otherwise (save_model: null)
    unique_ids = True   # ids name examples (predictions.json): unique within a split

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.METRICS)

    def pair_column(self, task) -> str | None:
        """The column of the short text read before each document (`task.<pair_key>`), or None."""
        return task.get(self.pair_key) if self.pair_key else None

    def text_columns(self, task) -> tuple[str, ...]:
        """The columns of a task's rows that hold text, each checked to be non-empty: the document and the
        short text read before it."""
        pair = self.pair_column(task)
        return (self.text_column, *([pair] if pair else []))

    def columns(self, task) -> tuple[str, ...]:
        """The columns of the unified local schema a task's rows hold (besides the id), the target last."""
        return (*self.text_columns(task), *([self.target_column] if self.target_column else []))

    def input_columns(self, task) -> tuple[str, ...]:
        """The columns a model reads (the schema's columns but the target)."""
        return tuple(c for c in self.columns(task) if c != self.target_column)

    def targets(self, rows: list[dict]) -> list:
        """The targets of `rows`, as metrics and predictions.json take them."""
        return [r[self.target_column] for r in rows]

    def inputs(self, rows: list[dict], task) -> tuple[list[str] | None, list[str]]:
        """(the short texts read first, or None; the documents): the tokenizer truncates the documents only."""
        pair = self.pair_column(task)
        return ([r[pair] for r in rows] if pair else None), [r[self.text_column] for r in rows]

    # ------------------------------------------------------------------ data
    def check(self, task) -> list[str]:
        """What is wrong with this kind's task settings (checked before any data is read)."""
        return []

    def document(self, row: dict) -> str:
        """The document an example reads, whitespace collapsed: several examples (questions, queries, hypotheses)
        may share one, and carving keeps them on one side."""
        return " ".join(row[self.text_column].split())

    def content(self, row: dict, task) -> str:
        """What an example asks of the model, whitespace collapsed: two examples with the same content are
        the same question, whatever their ids or targets (an evaluation example's content must not be in
        training). With a pair, the short text and the document together."""
        pair = self.pair_column(task)
        text = f"{row[pair]} {row[self.text_column]}" if pair else row[self.text_column]
        return " ".join(text.split())

    def target(self, value, task, where: str, example_id: str, row: dict | None = None):
        """A row's target in the form training uses, or a ConfigError that names the example (`row`: the
        whole row, for targets checked against its text)."""
        raise NotImplementedError

    def max_target_length(self, task) -> int | None:
        """The longest target in tokens (longer ones are cut), or None for a kind without text targets."""
        return None

    def tokenizer_texts(self, rows: list[dict], task) -> list[str]:
        """The text a tokenizer trained for this task learns from."""
        firsts, texts = self.inputs(rows, task)
        return (firsts or []) + texts

    # ------------------------------------------------------------------ features and batches
    TARGETS: tuple[str, ...] = ("labels",)  # the feature columns that hold what training learns

    def encode(self, rows: list[dict], tokenizer, task, max_length: int) -> dict[str, list]:
        """The features of `rows` as columns, one feature per row here (a kind may make several per row):
        input_ids and attention_mask cut to `max_length` (only the document when a short text comes first),
        the TARGETS, and input_length (and target_length) before any cut."""
        firsts, texts = self.inputs(rows, task)
        if firsts is None:
            enc = tokenizer(texts, truncation=True, max_length=max_length)
            full = tokenizer(texts, verbose=False)["input_ids"]
        else:  # the short text first, whole: only the document is cut
            check_room(tokenizer, firsts, rows, self.pair_column(task), max_length)
            enc = tokenizer(firsts, texts, truncation="only_second", max_length=max_length)
            full = tokenizer(firsts, texts, verbose=False)["input_ids"]
        features = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                    "input_length": [len(ids) for ids in full]}
        features["labels"], target_lengths = self.encode_targets(tokenizer, rows, task)
        if target_lengths is not None:
            features["target_length"] = target_lengths
        return features

    def encoding(self, task) -> dict:
        """The task settings its features depend on besides the rows, the tokenizer and the length (they key
        the cache of tokenized splits)."""
        return {"max_target_length": self.max_target_length(task)}

    def encode_targets(self, tokenizer, rows: list[dict], task) -> tuple[list, list[int] | None]:
        """(targets as the model trains on them, their token lengths before truncation or None)."""
        raise NotImplementedError

    def collate(self, features: list[dict], tokenizer, pad_to: int | None, global_attention: bool, task,
                rng: torch.Generator | None = None) -> dict:
        """A batch of features as the model takes it: padded inputs (to `pad_to` when given, else the longest),
        the targets when the features have them, and `global_attention_mask` for the families that take one.
        `rng`: training's random draws for a kind that corrupts its inputs (masked LM); None in evaluation."""
        inputs = [{"input_ids": f["input_ids"], "attention_mask": f["attention_mask"]} for f in features]
        batch = dict(tokenizer.pad(inputs, padding="max_length" if pad_to else "longest", max_length=pad_to,
                                   return_tensors="pt"))
        if all(t in features[0] for t in self.TARGETS):
            batch.update(self.collate_targets(features))
        if global_attention:
            batch["global_attention_mask"] = self.global_mask(batch, features)
        return batch

    def collate_targets(self, features: list[dict]) -> dict[str, torch.Tensor]:
        return {"labels": self.pad_targets([f["labels"] for f in features])}

    def pad_targets(self, targets: list) -> torch.Tensor:
        raise NotImplementedError

    def truncation(self, ds, max_length: int, task) -> dict:
        """What the length limits cut from a tokenized split (`truncation`), for the record."""
        return truncation(ds, max_length, self.max_target_length(task))

    def global_mask(self, batch: dict, features: list[dict]) -> torch.Tensor:
        """Where Longformer and LED put global attention: on the first token, as the Longformer paper does
        for classification and summarization."""
        mask = torch.zeros_like(batch["input_ids"])
        mask[:, 0] = 1
        return mask

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

    def predictions(self, outputs: list, eval_ds, rows: list[dict], task) -> list:
        """One prediction per example of `rows` from `predict`'s outputs, one per feature (the same here)."""
        return outputs

    def metrics(self, predictions: list, targets: list, generated_tokens: int, task) -> dict[str, float]:
        raise NotImplementedError

    def provenance(self, task) -> dict:
        """How this kind's metrics were computed, for the record (e.g. ROUGE-Lsum's sentence splitter)."""
        return {}

    def readable(self, values: list, task) -> list:
        """Predictions or targets as a person reads them in predictions.json."""
        return values

    # ------------------------------------------------------------------ benchmark
    def bench_task(self, new_tokens: int) -> dict:
        """The task config a benchmark builds a model of this kind for (it feeds random token ids, no data)."""
        return {"name": "bench", "kind": self.name, "max_source_length": 512}

    def bench_batch(self, batch: int, length: int, vocab: int, new_tokens: int, device) -> tuple[dict, int]:
        """(a batch of random token ids at full length with random targets, as collate makes them; the input
        tokens it holds)."""
        ids = torch.randint(5, vocab, (batch, length), device=device)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                **self.bench_targets(batch, length, vocab, new_tokens, device)}, batch * length

    def bench_targets(self, batch: int, length: int, vocab: int, new_tokens: int, device) -> dict:
        raise NotImplementedError

    def write_predictions(self, path: Path, ids: list, predictions: list, targets: list, task) -> None:
        write_json_atomic(path, {"ids": ids, "predictions": self.readable(predictions, task),
                                 "targets": self.readable(targets, task)})


def truncation(ds, max_length: int, max_target_length: int | None) -> dict:
    """What the length limits cut from a tokenized split, for inputs (and targets): how many were cut
    (`inputs_cut`), the share of the split's tokens dropped (`inputs_dropped_share`), and among the cut ones
    the mean and the largest share of an example's tokens dropped (`inputs_cut_mean_share`, `..._max_share`)."""
    out = {"examples": len(ds)}
    for what, column, limit in (("inputs", "input_length", max_length), ("targets", "target_length", max_target_length)):
        if column in ds.column_names and limit:
            lengths = ds[column]
            cut = [(n - limit) / n for n in lengths if n > limit]
            out[f"{what}_cut"] = len(cut)
            out[f"{what}_dropped_share"] = sum(max(n - limit, 0) for n in lengths) / max(sum(lengths), 1)
            if cut:
                out[f"{what}_cut_mean_share"] = sum(cut) / len(cut)
                out[f"{what}_cut_max_share"] = max(cut)
    return out
