"""Classification: a label per document; accuracy and F1."""

from __future__ import annotations

import logging

import torch
from omegaconf import OmegaConf

from ..errors import ConfigError
from ..metrics import classification_metrics
from .base import Metric, TaskKind

log = logging.getLogger(__name__)


class Classification(TaskKind):
    name = "classification"
    text_column, target_column = "text", "label"
    pair_key = "text_pair_column"  # e.g. ContractNLI's hypothesis
    METRICS = tuple(Metric(name) for name in ("accuracy", "f1_macro", "f1_micro", "f1_binary"))

    def check(self, task):
        if OmegaConf.is_missing(task, "label_names") or not task.label_names:
            return ["task.label_names: give the class names in label-index order, e.g. task.label_names=[neg,pos]"]
        return []

    def target(self, value, task, where, example_id, row=None):
        names = list(task.label_names or [])
        if isinstance(value, int) and 0 <= value < len(names):  # a bool is 0 or 1 (Hyperpartisan's labels)
            return int(value)
        if isinstance(value, str) and value in names:
            return names.index(value)
        raise ConfigError(f"{where}: example {example_id!r} has label {value!r}, which is not one of "
                          f"task.label_names {names} (or an index into it)")

    def encode_targets(self, tokenizer, rows, task):
        return [r[self.target_column] for r in rows], None

    def pad_targets(self, targets):
        return torch.tensor(targets, dtype=torch.long)

    def _labels(self, task) -> dict:
        names = list(task.label_names)
        return dict(num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})

    def random_config(self, task, tokenizer):
        return self._labels(task)

    def pretrained_config(self, config, task, checkpoint):
        labels = self._labels(task)
        load_args = {}
        head = any(a.endswith("ForSequenceClassification") for a in getattr(config, "architectures", None) or ())
        if config.num_labels != labels["num_labels"] and head:  # a trained classifier of another size (a pretraining
            # checkpoint, e.g. a masked-LM one, has none: its new head is the only one)
            log.warning("checkpoint %s has a %d-label head; a new %d-label head is initialised",
                        checkpoint, config.num_labels, labels["num_labels"])
            load_args["ignore_mismatched_sizes"] = True
        for key, value in labels.items():
            setattr(config, key, value)
        return load_args

    def bench_task(self, new_tokens):
        return {**super().bench_task(new_tokens), "label_names": ["a", "b"]}

    def bench_targets(self, batch, length, vocab, new_tokens, device):
        return {"labels": torch.zeros(batch, dtype=torch.long, device=device)}

    def predict(self, model, batch, tokenizer):
        return model(**batch).logits.argmax(-1).tolist(), 0

    def metrics(self, predictions, targets, generated_tokens, task):
        return classification_metrics(predictions, targets)

    def readable(self, values, task):
        return [task.label_names[v] for v in values]
