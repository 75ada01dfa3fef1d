"""Summarization: an encoder-decoder generates an abstract per article; ROUGE and generation length."""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError, integer, unknown_keys
from ..metrics import LSUM_SPLITTERS, rouge_metrics
from .base import Metric, TaskKind


# Generation settings that must be integers, with their minimum.
GENERATION_INTEGERS = {"num_beams": 1, "max_new_tokens": 1, "min_new_tokens": 0, "no_repeat_ngram_size": 0}
# GenerationConfig fields lsgbench sets itself (prepare, predict: one summary per article, max_new_tokens decides).
GENERATION_SET = ("max_length", "pad_token_id", "eos_token_id", "decoder_start_token_id", "num_return_sequences",
                  "return_dict_in_generate", "transformers_version")


class Summarization(TaskKind):
    name = "summarization"
    text_column, target_column = "article", "abstract"
    pair_key = "query_column"  # e.g. QMSum's query
    METRICS = (*(Metric(name) for name in ("rouge1", "rouge2", "rougeL", "rougeLsum")),
               Metric("gen_len", higher_is_better=None, unit="tokens"))
    generates = True

    def check(self, task):
        from transformers import GenerationConfig

        problems = [] if task.rouge_lsum_split in LSUM_SPLITTERS else [
            f"task.rouge_lsum_split={task.rouge_lsum_split!r} is unknown; choose one of {list(LSUM_SPLITTERS)}"]
        problems += integer("task.max_target_length", task.max_target_length, 1)
        generation = task.generation or {}
        settable = [k for k in vars(GenerationConfig()) if not k.startswith("_") and k not in GENERATION_SET]
        problems += unknown_keys(generation, "task.generation", settable, "transformers.GenerationConfig")
        for key, minimum in GENERATION_INTEGERS.items():
            if key in generation:
                problems += integer(f"task.generation.{key}", generation[key], minimum)
        if not problems and generation.get("min_new_tokens", 0) > generation.get("max_new_tokens", math.inf):
            problems.append(f"task.generation.min_new_tokens={generation.min_new_tokens} is above "
                            f"task.generation.max_new_tokens={generation.max_new_tokens}")
        return problems

    def target(self, value, task, where, example_id, row=None):
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}: example {example_id!r} has an empty or non-text {self.target_column!r} "
                              f"({type(value).__name__}); remove or fill it")
        return value

    def max_target_length(self, task):
        return task.max_target_length

    def tokenizer_texts(self, rows, task):
        return super().tokenizer_texts(rows, task) + [r[self.target_column] for r in rows]

    def encode_targets(self, tokenizer, rows, task):
        targets = [r[self.target_column] for r in rows]
        ids = tokenizer(text_target=targets, truncation=True, max_length=task.max_target_length)["input_ids"]
        full = tokenizer(text_target=targets, verbose=False)["input_ids"]
        return ids, [len(t) for t in full]

    def pad_targets(self, targets):
        width = max(len(t) for t in targets)
        return torch.tensor([t + [-100] * (width - len(t)) for t in targets], dtype=torch.long)  # -100: no loss

    def random_config(self, task, tokenizer):
        return dict(decoder_start_token_id=tokenizer.eos_token_id, forced_eos_token_id=tokenizer.eos_token_id)

    def prepare(self, model, tokenizer, task):
        gen = model.generation_config
        for key, value in (task.generation or {}).items():
            setattr(gen, key, value)
        gen.max_length = None  # max_new_tokens decides
        gen.pad_token_id = tokenizer.pad_token_id
        gen.eos_token_id = tokenizer.eos_token_id
        if gen.decoder_start_token_id is None:
            gen.decoder_start_token_id = model.config.decoder_start_token_id

    def bench_task(self, new_tokens):
        return {**super().bench_task(new_tokens), "max_target_length": new_tokens, "generation": None}

    def bench_targets(self, batch, length, vocab, new_tokens, device):
        return {"labels": torch.randint(5, vocab, (batch, new_tokens), device=device)}  # the decoder reads them

    def predict(self, model, batch, tokenizer):
        new = model.generate(**batch)[:, 1:]  # drop the decoder start token
        return tokenizer.batch_decode(new, skip_special_tokens=True), int((new != tokenizer.pad_token_id).sum())

    def metrics(self, predictions, targets, generated_tokens, task):
        return {**rouge_metrics(predictions, targets, task.rouge_lsum_split),
                "gen_len": generated_tokens / len(predictions)}

    def provenance(self, task):
        return {"rouge_lsum_split": task.rouge_lsum_split}
