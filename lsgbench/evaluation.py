"""Evaluation: one pass over the eval split, timed, with the task's metrics.

Batches are formed over examples sorted by length (less padding); metrics do not depend on order.
Summaries are scored against the original reference text, not its truncated token ids.
"""

from __future__ import annotations

import contextlib

import torch

from .measure import Phase
from .metrics import classification_metrics, rouge_metrics
from .train import Collator


def evaluate(built, eval_ds, references: list, task, batch_size: int, device: torch.device, bf16: bool) -> tuple[dict, dict, list]:
    """Returns (metrics, efficiency, predictions) for the eval split; `references` are labels or abstracts."""
    model = built.model.to(device).eval()
    collator = Collator(built.tokenizer, task.kind, built.max_length if built.family.fixed_padding else None,
                        built.family.global_first_token)
    order = sorted(range(len(eval_ds)), key=lambda i: -len(eval_ds[i]["input_ids"]))
    outputs: dict[int, object] = {}
    source_tokens = generated_tokens = 0
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with Phase(device) as phase, torch.inference_mode(), autocast:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = collator([{k: v for k, v in eval_ds[i].items() if k != "labels"} for i in idx])
            batch = {k: v.to(device) for k, v in batch.items()}
            source_tokens += int(batch["attention_mask"].sum())
            if task.kind == "classification":
                predicted = model(**batch).logits.argmax(-1).tolist()
            else:
                ids = model.generate(**batch)
                new = ids[:, 1:]  # drop the decoder start token
                generated_tokens += int((new != built.tokenizer.pad_token_id).sum())
                predicted = built.tokenizer.batch_decode(new, skip_special_tokens=True)
            outputs.update(zip(idx, predicted))
    predictions = [outputs[i] for i in range(len(eval_ds))]
    if task.kind == "classification":
        metrics = classification_metrics(predictions, references)
    else:
        metrics = rouge_metrics(predictions, references)
        metrics["gen_len"] = generated_tokens / len(predictions)
    metrics = {k: v for k, v in metrics.items() if k in task.metrics}
    efficiency = {
        "eval_tokens_per_s": source_tokens / phase.seconds,
        "eval_peak_mem_mb": phase.peak_mem_mb,
        "eval_s": phase.seconds,
    }
    if task.kind == "summarization":
        efficiency["generated_tokens_per_s"] = generated_tokens / phase.seconds
    return metrics, efficiency, predictions
