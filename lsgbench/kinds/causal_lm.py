"""Causal language modelling: decoder-only models predict each token from the ones before it; loss, perplexity,
bits per token, per character and per byte (lower is better).

Rows are documents, {"id", "text"}. A split's documents are tokenized and joined into one stream, each followed by
the end-of-sequence token (predicting where a document ends is part of the task). The stream is cut into pieces
that fill the input: each piece is the start token (BOS, else EOS) and the next max_length - 1 tokens of the
stream, so every token of the stream is predicted exactly once, from the tokens of its own piece before it
(non-overlapping evaluation: a piece's first tokens see little context; longer pieces see more). Nothing is
truncated; the last piece is shorter.

Metrics, over every predicted token of the evaluation split:
- lm_loss: the mean cross-entropy in nats; perplexity = exp(lm_loss); bits_per_token = lm_loss / ln 2;
- bits_per_character and bits_per_byte: the summed loss in bits over the characters (UTF-8 bytes) of the text.
  Each token owns the text from its start to the next token's start in its document (the last one to the end),
  so a document's characters are shared out among its tokens exactly once; the end-of-document tokens own none.
  Figures from other tokenizers compare in bits per character (or byte), not in perplexity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..record import write_json_atomic
from .base import Metric, TaskKind
from .masked_lm import _padded

LOGIT_ROWS = 4096  # positions whose vocabulary rows are made at once in evaluation (a long piece's would dominate memory)


class CausalLM(TaskKind):
    name = "causal_lm"
    text_column, target_column = "text", None
    METRICS = (Metric("lm_loss", higher_is_better=False, unit="nats", digits=3),
               Metric("perplexity", higher_is_better=False, unit="exp(nats)", digits=2),
               Metric("bits_per_token", higher_is_better=False, unit="bits", digits=3),
               Metric("bits_per_character", higher_is_better=False, unit="bits", digits=3),
               Metric("bits_per_byte", higher_is_better=False, unit="bits", digits=3))
    TARGETS = ()  # the targets are the inputs: collate makes the labels
    saves_model = True  # a pretrained decoder is kept for the runs that evaluate or fine-tune it
    unique_ids = False  # documents are joined into one stream; no prediction names one

    def target(self, value, task, where, example_id, row=None):
        return None

    def encoding(self, task):
        return {}

    # ------------------------------------------------------------------ features and batches
    @staticmethod
    def _specials(tokenizer) -> tuple[int, int]:
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if start is None or tokenizer.eos_token_id is None:
            raise ConfigError(f"causal language modelling needs a tokenizer with an end-of-sequence token; "
                              f"{type(tokenizer).__name__} has bos {tokenizer.bos_token!r}, eos {tokenizer.eos_token!r}")
        return start, tokenizer.eos_token_id

    def encode(self, rows, tokenizer, task, max_length):
        """One feature per piece of the split's stream: input_ids (the start token, then the stream), attention_mask,
        the characters and bytes each token stands for, input_length."""
        start, eos = self._specials(tokenizer)
        texts = [r[self.text_column] for r in rows]
        enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        ids, chars, nbytes = [], [], []
        for text, doc, offsets in zip(texts, enc["input_ids"], enc["offset_mapping"]):
            starts = [a for a, _ in offsets] + [len(text)]
            ids += [*doc, eos]
            spans = [text[starts[i]:starts[i + 1]] for i in range(len(doc))]
            chars += [len(s) for s in spans] + [0]
            nbytes += [len(s.encode("utf-8")) for s in spans] + [0]
        size = max_length - 1
        features = {k: [] for k in ("input_ids", "attention_mask", "chars", "bytes", "input_length")}
        for first in range(0, len(ids), size):
            piece = slice(first, first + size)
            features["input_ids"].append([start, *ids[piece]])
            features["chars"].append([0, *chars[piece]])
            features["bytes"].append([0, *nbytes[piece]])
            features["attention_mask"].append([1] * len(features["input_ids"][-1]))
            features["input_length"].append(len(features["input_ids"][-1]))
        return features

    def collate(self, features, tokenizer, pad_to, global_attention, task, rng=None):
        inputs = [{"input_ids": f["input_ids"], "attention_mask": f["attention_mask"]} for f in features]
        batch = dict(tokenizer.pad(inputs, padding="max_length" if pad_to else "longest", max_length=pad_to,
                                   return_tensors="pt"))
        length = batch["input_ids"].shape[1]
        batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)  # the model shifts them
        batch["labels"][:, 0] = -100  # the start token is given, not predicted
        if rng is None:  # evaluation: what each token stands for
            batch["chars"] = _padded([f["chars"] for f in features], length, 0)
            batch["bytes"] = _padded([f["bytes"] for f in features], length, 0)
        return batch

    def truncation(self, ds, max_length, task):
        """Nothing is cut: the record says how many pieces and tokens the split made."""
        return {"pieces": len(ds), "tokens": sum(ds["input_length"])}

    # ------------------------------------------------------------------ evaluation
    def predict(self, model, batch, tokenizer):
        """Per piece: (summed loss in nats over its predicted tokens, their number, their characters, their bytes).
        The output layer runs on LOGIT_ROWS positions at a time."""
        labels, chars, nbytes = batch.pop("labels"), batch.pop("chars"), batch.pop("bytes")
        hidden = model.base_model(**batch, use_cache=False).last_hidden_state[:, :-1]  # position t predicts t + 1
        target = labels[:, 1:]
        scored = target != -100
        flat, wanted = hidden[scored], target[scored]
        nll = torch.cat([F.cross_entropy(output_logits(model, flat[i:i + LOGIT_ROWS]).float(),
                                         wanted[i:i + LOGIT_ROWS], reduction="none")
                         for i in range(0, len(wanted), LOGIT_ROWS)]) if len(wanted) else flat.new_zeros(0)
        per_token = torch.zeros(target.shape, dtype=torch.float64, device=labels.device)
        per_token[scored] = nll.double()
        return list(zip(per_token.sum(1).tolist(), scored.sum(1).tolist(), (chars[:, 1:] * scored).sum(1).tolist(),
                        (nbytes[:, 1:] * scored).sum(1).tolist())), 0

    def targets(self, rows):
        return []

    def metrics(self, predictions, targets, generated_tokens, task):
        return lm_metrics(*(sum(p[i] for p in predictions) for i in range(4)))

    def write_predictions(self, path, ids, predictions, targets, task):
        """Per piece of the evaluation stream: its predicted tokens and their summed loss."""
        write_json_atomic(path, {"pieces": [{"piece": i, "predicted_tokens": n, "chars": c, "bytes": b,
                                             "loss_nats": loss}
                                            for i, (loss, n, c, b) in enumerate(predictions)]})

    # ------------------------------------------------------------------ benchmark
    def bench_targets(self, batch, length, vocab, new_tokens, device):
        return {"labels": torch.randint(5, vocab, (batch, length), device=device)}


def output_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """The model's next-token logits from its last hidden states: its output layer, then Gemma-2's final soft cap
    (cap * tanh(logits / cap)) where the config has one, as the model's own forward does."""
    logits = model.get_output_embeddings()(hidden)
    cap = getattr(model.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def lm_metrics(nll_nats: float, tokens: int, chars: int, nbytes: int) -> dict[str, float]:
    """The evaluation's metrics from the summed loss (nats) of its predicted tokens, their number, characters and
    bytes."""
    if tokens == 0:
        raise ConfigError("the evaluation split has no token to predict; give it text")
    loss, bits = nll_nats / tokens, nll_nats / math.log(2)
    return {"lm_loss": loss, "perplexity": math.exp(loss), "bits_per_token": loss / math.log(2),
            "bits_per_character": bits / chars if chars else math.nan,
            "bits_per_byte": bits / nbytes if nbytes else math.nan}
