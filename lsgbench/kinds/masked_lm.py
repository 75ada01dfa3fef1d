"""Masked language modelling: the pretraining objective of BERT, RoBERTa and (continued, at 4,096 tokens) the
Longformer; masked-token loss, perplexity, bits per token and bits per character.

Rows are documents, {"id", "text"}. A split's documents are tokenized, joined into one stream with the
tokenizer's separator between documents, and cut into pieces that fill the input (CLS piece SEP): nothing is
truncated, the last piece is shorter. BERT's corruption picks 15% of the non-special tokens; of those, 80%
become the mask token, 10% a random token, 10% stay. Training draws it anew for every batch (RoBERTa's dynamic
masking, seeded by the run's seed). Evaluation draws it once per token of the stream with a fixed seed, so two
runs on the same split and tokenizer score the same tokens under the same corruption, whatever their input
length (pieces of 1,024 and of 4,096 tokens hold the same masked tokens).

Metrics, over every masked token of the evaluation split (lower is better):
- mlm_loss: the mean cross-entropy in nats; perplexity = exp(mlm_loss);
- bits_per_token = mlm_loss / ln 2. The Longformer paper's "BPC" of its MLM runs is this figure (its
  conversion notebook divides the loss by ln 2);
- bits_per_character: the masked tokens' summed loss in bits over the characters they stand for. Each token
  owns the characters from its start to the next token's start in its document (the last one to the end), so
  a document's characters are shared out among its tokens exactly once and spaces count.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, number
from ..record import write_json_atomic
from .base import Metric, TaskKind

EVAL_MASK_SEED = 1234  # the evaluation's corruption: fixed, so every run scores the same masked tokens
MASK, RANDOM = 0.8, 0.1  # of the chosen tokens: share masked, share replaced by a random token (the rest stay)


class MaskedLM(TaskKind):
    name = "masked_lm"
    text_column, target_column = "text", None
    METRICS = (Metric("mlm_loss", higher_is_better=False, unit="nats", digits=3),
               Metric("perplexity", higher_is_better=False, unit="exp(nats)", digits=1),
               Metric("bits_per_token", higher_is_better=False, unit="bits", digits=3),
               Metric("bits_per_character", higher_is_better=False, unit="bits", digits=3))
    TARGETS = ()  # collate makes the targets: dynamic masking in training, the fixed corruption in evaluation
    saves_model = True  # a pretraining run is kept for the runs that fine-tune it (save_model)
    unique_ids = False  # documents are joined into one stream; no prediction names one (WikiText's titles repeat)

    def check(self, task):
        return number("task.mlm_probability", task.mlm_probability, above=0, below=1)

    def target(self, value, task, where, example_id, row=None):
        return None

    def encoding(self, task):
        return {"mlm_probability": task.mlm_probability}

    # ------------------------------------------------------------------ features and batches
    @staticmethod
    def _specials(tokenizer) -> tuple[int, int]:
        cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        if cls is None or sep is None or tokenizer.mask_token_id is None:
            raise ConfigError(f"masked language modelling needs a tokenizer with a mask token and CLS/SEP (or BOS/EOS) "
                              f"tokens; {type(tokenizer).__name__} has mask {tokenizer.mask_token!r}, cls/bos id "
                              f"{cls}, sep/eos id {sep}")
        return cls, sep

    def encode(self, rows, tokenizer, task, max_length):
        """One feature per piece of the split's stream: input_ids (uncorrupted), attention_mask, the fixed
        evaluation corruption (eval_input_ids, eval_labels: the true id where a token is scored, else -100), the
        characters each token stands for (chars), input_length."""
        cls, sep = self._specials(tokenizer)
        texts = [r[self.text_column] for r in rows]
        enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        ids, chars = [], []
        for text, doc, offsets in zip(texts, enc["input_ids"], enc["offset_mapping"]):
            starts = [start for start, _ in offsets] + [len(text)]
            ids += [*doc, sep]
            chars += [starts[i + 1] - starts[i] for i in range(len(doc))] + [0]
        ids, chars = np.array(ids, dtype=np.int64), np.array(chars, dtype=np.int64)
        scored = np.isin(ids, tokenizer.all_special_ids, invert=True)
        rng = np.random.default_rng(EVAL_MASK_SEED)  # one draw per token of the stream: the same at every length
        chosen = (rng.random(len(ids)) < task.mlm_probability) & scored
        how = rng.random(len(ids))
        corrupted = np.where(chosen & (how < MASK), tokenizer.mask_token_id, ids)
        swap = chosen & (how >= MASK) & (how < MASK + RANDOM)
        corrupted = np.where(swap, rng.integers(0, len(tokenizer), len(ids)), corrupted)
        labels = np.where(chosen, ids, -100)
        size = max_length - 2  # CLS piece SEP
        features = {k: [] for k in ("input_ids", "attention_mask", "eval_input_ids", "eval_labels", "chars",
                                    "input_length")}
        for start in range(0, len(ids), size):
            piece = slice(start, start + size)
            features["input_ids"].append([cls, *ids[piece].tolist(), sep])
            features["eval_input_ids"].append([cls, *corrupted[piece].tolist(), sep])
            features["eval_labels"].append([-100, *labels[piece].tolist(), -100])
            features["chars"].append([0, *chars[piece].tolist(), 0])
            features["attention_mask"].append([1] * (len(features["input_ids"][-1])))
            features["input_length"].append(len(features["input_ids"][-1]))
        return features

    def collate(self, features, tokenizer, pad_to, global_attention, task, rng=None):
        """Training (`rng` given): the pieces with a fresh corruption drawn from `rng`; evaluation: the fixed one,
        with the characters each token stands for."""
        field = "input_ids" if rng is not None else "eval_input_ids"
        inputs = [{"input_ids": f[field], "attention_mask": f["attention_mask"]} for f in features]
        batch = dict(tokenizer.pad(inputs, padding="max_length" if pad_to else "longest", max_length=pad_to,
                                   return_tensors="pt"))
        if rng is None:
            length = batch["input_ids"].shape[1]
            batch["labels"] = _padded([f["eval_labels"] for f in features], length, -100)
            batch["chars"] = _padded([f["chars"] for f in features], length, 0)
        else:
            batch["input_ids"], batch["labels"] = corrupt(batch["input_ids"], tokenizer, task.mlm_probability, rng)
        if global_attention:
            batch["global_attention_mask"] = self.global_mask(batch, features)
        return batch

    def truncation(self, ds, max_length, task):
        """Nothing is cut: the record says how many pieces and tokens the split made."""
        return {"pieces": len(ds), "tokens": sum(ds["input_length"])}

    # ------------------------------------------------------------------ evaluation
    def predict(self, model, batch, tokenizer):
        """Per piece: (summed loss in nats over its scored tokens, their number, the characters they stand for).
        The prediction head runs on the scored positions only (a whole-vocabulary row per token of a long
        piece would dominate memory)."""
        labels, chars = batch.pop("labels"), batch.pop("chars")
        hidden = model.base_model(**batch).last_hidden_state
        scored = labels != -100
        nll = F.cross_entropy(mlm_logits(model, hidden[scored]).float(), labels[scored], reduction="none")
        per_token = torch.zeros(labels.shape, dtype=torch.float64, device=labels.device)
        per_token[scored] = nll.double()
        return list(zip(per_token.sum(1).tolist(), scored.sum(1).tolist(),
                        (chars * scored).sum(1).tolist())), 0

    def targets(self, rows):
        return []

    def metrics(self, predictions, targets, generated_tokens, task):
        return mlm_metrics(*(sum(p[i] for p in predictions) for i in range(3)))

    def write_predictions(self, path, ids, predictions, targets, task):
        """Per piece of the evaluation stream: its scored tokens and their summed loss."""
        write_json_atomic(path, {"pieces": [{"piece": i, "scored_tokens": n, "chars": c, "loss_nats": loss}
                                            for i, (loss, n, c) in enumerate(predictions)]})

    # ------------------------------------------------------------------ benchmark
    def bench_targets(self, batch, length, vocab, new_tokens, device):
        labels = torch.randint(5, vocab, (batch, length), device=device)
        chosen = torch.rand(batch, length, device=device) < 0.15
        return {"labels": labels.masked_fill(~chosen, -100)}


def mlm_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """A masked-LM model's vocabulary logits from its last hidden states, as its forward makes them."""
    if hasattr(model, "lm_head"):  # RoBERTa, Longformer
        return model.lm_head(hidden)
    if hasattr(model, "cls"):      # BERT, BigBird
        return model.cls(hidden)
    return model.decoder(model.head(hidden))  # ModernBERT


def corrupt(ids: torch.Tensor, tokenizer, probability: float, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption of a padded batch: (inputs, labels: the true id where a token is to be predicted, else
    -100). Special and padding tokens are never chosen."""
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    chosen = (torch.rand(ids.shape, generator=rng) < probability) & ~special
    how = torch.rand(ids.shape, generator=rng)
    inputs = ids.masked_fill(chosen & (how < MASK), tokenizer.mask_token_id)
    swap = chosen & (how >= MASK) & (how < MASK + RANDOM)
    inputs = torch.where(swap, torch.randint(len(tokenizer), ids.shape, generator=rng), inputs)
    return inputs, ids.masked_fill(~chosen, -100)


def _padded(rows: list[list[int]], length: int, fill: int) -> torch.Tensor:
    out = torch.full((len(rows), length), fill, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.tensor(row)
    return out


def mlm_metrics(nll_nats: float, tokens: int, chars: int) -> dict[str, float]:
    """The evaluation's metrics from the summed loss (nats) of its scored tokens, their number and characters."""
    if tokens == 0:
        raise ConfigError("the evaluation split has no scored (masked) token; give it more text or raise "
                          "task.mlm_probability")
    loss = nll_nats / tokens
    return {"mlm_loss": loss, "perplexity": math.exp(loss), "bits_per_token": loss / math.log(2),
            "bits_per_character": nll_nats / math.log(2) / chars if chars else math.nan}
