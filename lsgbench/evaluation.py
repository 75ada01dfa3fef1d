"""Evaluation: one pass over the eval split, timed, with the task's metrics.

Batches are formed over examples sorted by length (less padding); metrics do not depend on order.
Generated summaries are scored against the original target text, not its truncated token ids.
"""

from __future__ import annotations

import contextlib

import torch
from tqdm.auto import tqdm

from .kinds import task_kind
from .measure import Phase
from .train import Collator


def evaluate(built, eval_ds, rows: list[dict], task, batch_size: int, device: torch.device,
             bf16: bool) -> tuple[dict, dict, list]:
    """Returns (metrics, efficiency, predictions) for the eval split: `rows`, its examples, and `eval_ds`,
    their features."""
    kind = task_kind(task)
    model = built.model.to(device).eval()
    collator = Collator(built, task)
    order = sorted(range(len(eval_ds)), key=lambda i: -len(eval_ds[i]["input_ids"]))
    outputs: dict[int, object] = {}
    source_tokens = generated_tokens = 0
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with Phase(device) as phase, torch.inference_mode(), autocast:
        for start in tqdm(range(0, len(order), batch_size), desc="evaluate", unit="batch", disable=None):
            idx = order[start : start + batch_size]
            batch = collator([{k: v for k, v in eval_ds[i].items() if k not in kind.TARGETS} for i in idx])
            batch = {k: v.to(device) for k, v in batch.items()}
            source_tokens += int(batch["attention_mask"].sum())
            predicted, generated = kind.predict(model, batch, built.tokenizer)
            generated_tokens += generated
            outputs.update(zip(idx, predicted))
    predictions = kind.predictions([outputs[i] for i in range(len(eval_ds))], eval_ds, rows, task)
    metrics = kind.metrics(predictions, kind.targets(rows), generated_tokens, task)
    metrics = {k: v for k, v in metrics.items() if k in task.metrics}
    efficiency = {
        "eval_tokens_per_s": source_tokens / phase.seconds,
        "eval_peak_mem_mb": phase.peak_mem_mb,
        "eval_s": phase.seconds,
        "eval_busy_elsewhere": phase.busy_elsewhere,
    }
    if kind.generates:
        efficiency["generated_tokens_per_s"] = generated_tokens / phase.seconds
    return metrics, efficiency, predictions
