"""Multiple choice: the option that answers the question about the context; accuracy.

Rows are {"id", "context", "question", "options": [...], "label": int} (QuALITY, RACE; WikiHop's candidates
as options). Each option is read as `question option` first, whole, then the context, cut to fit; the model
scores every option and the best wins. Rows may have different numbers of options (WikiHop: 2 to 79): a
batch pads the shorter ones with placeholder options that `option_mask` keeps out of the scores and the
loss (models/heads.MaskedChoices).
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from ..metrics import classification_metrics
from .base import Metric, TaskKind, check_room


class MultipleChoice(TaskKind):
    name = "multiple_choice"
    text_column, target_column = "context", "label"
    options_column = "options"
    METRICS = (Metric("accuracy"),)

    def text_columns(self, task):
        return self.text_column, "question"

    def columns(self, task):
        return (*self.text_columns(task), self.options_column, self.target_column)

    def content(self, row, task):
        return " ".join(" ".join([row["question"], *row[self.options_column], row[self.text_column]]).split())

    def target(self, value, task, where, example_id, row=None):
        """The label, an index into the row's options (each a non-empty text, at least two)."""
        options = row[self.options_column]
        if not isinstance(options, list) or len(options) < 2 or \
                not all(isinstance(o, str) and o.strip() for o in options):
            raise ConfigError(f"{where}: example {example_id!r} has options {options!r}; they must be a list of at "
                              f"least two non-empty texts")
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < len(options):
            raise ConfigError(f"{where}: example {example_id!r} has label {value!r}, which is not an index into its "
                              f"{len(options)} options (0 to {len(options) - 1})")
        return value

    def tokenizer_texts(self, rows, task):
        return [t for r in rows for t in (r[self.text_column], r["question"], *r[self.options_column])]

    # ------------------------------------------------------------------ features and batches
    def encode(self, rows, tokenizer, task, max_length):
        """One feature per row: per option, input_ids and attention_mask of `question option` + the context
        (cut), and first_length (the tokens before the context: Longformer's global attention); the label;
        input_length, the longest option's before any cut."""
        firsts = [f"{r['question']} {option}" for r in rows for option in r[self.options_column]]
        owners = [r for r in rows for _ in r[self.options_column]]
        contexts = [r[self.text_column] for r in owners]
        check_room(tokenizer, firsts, owners, "question and option", max_length)
        enc = tokenizer(firsts, contexts, truncation="only_second", max_length=max_length)
        full = [len(ids) for ids in tokenizer(firsts, contexts, verbose=False)["input_ids"]]
        lead = [len(ids) for ids in tokenizer(firsts, verbose=False)["input_ids"]]  # <s> question option </s>
        features = {"input_ids": [], "attention_mask": [], "first_length": [], "labels": [], "input_length": []}
        start = 0
        for row in rows:
            end = start + len(row[self.options_column])
            features["input_ids"].append(enc["input_ids"][start:end])
            features["attention_mask"].append(enc["attention_mask"][start:end])
            features["first_length"].append(lead[start:end])
            features["labels"].append(row[self.target_column])
            features["input_length"].append(max(full[start:end]))
            start = end
        return features

    def collate(self, features, tokenizer, pad_to, global_attention, task, rng=None):
        """[batch, options, length] inputs; an example's missing options are placeholders (its first token
        only) that option_mask marks 0."""
        width = max(len(f["input_ids"]) for f in features)
        length = pad_to or max(len(ids) for f in features for ids in f["input_ids"])
        shape = (len(features), width, length)
        input_ids = torch.full(shape, tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros(shape, dtype=torch.long)
        option_mask = torch.zeros(shape[:2], dtype=torch.long)
        for b, f in enumerate(features):
            for o in range(width):
                ids = f["input_ids"][o] if o < len(f["input_ids"]) else f["input_ids"][0][:1]
                input_ids[b, o, :len(ids)] = torch.tensor(ids)
                attention_mask[b, o, :len(ids)] = 1
            option_mask[b, :len(f["input_ids"])] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "option_mask": option_mask}
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.long)
        if global_attention:
            batch["global_attention_mask"] = self.global_mask(batch, features)
        return batch

    def global_mask(self, batch, features):
        """Longformer's global attention for multiple choice: on the question and the option."""
        mask = torch.zeros_like(batch["input_ids"])
        for b, f in enumerate(features):
            for o, n in enumerate(f.get("first_length", [1] * mask.shape[1])):
                mask[b, o, :n] = 1
        return mask

    BENCH_OPTIONS = 4  # QuALITY's and RACE's

    def bench_batch(self, batch, length, vocab, new_tokens, device):
        ids = torch.randint(5, vocab, (batch, self.BENCH_OPTIONS, length), device=device)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                "option_mask": torch.ones(batch, self.BENCH_OPTIONS, dtype=torch.long, device=device),
                "labels": torch.zeros(batch, dtype=torch.long, device=device)}, batch * self.BENCH_OPTIONS * length

    # ------------------------------------------------------------------ evaluation
    def predict(self, model, batch, tokenizer):
        return model(**batch).logits.argmax(-1).tolist(), 0

    def metrics(self, predictions, targets, generated_tokens, task):
        return {"accuracy": classification_metrics(predictions, targets)["accuracy"]}
