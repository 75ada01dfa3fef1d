"""Training: HF Trainer with a batch collator, token counting, step timing and a finite-loss guard."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from .errors import ConfigError
from .kinds import task_kind
from .measure import Phase, synchronize

log = logging.getLogger(__name__)


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


def resolve_device(trainer_cfg) -> torch.device:
    choice = trainer_cfg.device
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice not in ("cpu", "cuda"):
        raise ConfigError(f"trainer.device={trainer_cfg.device!r} is unknown; choose cpu, cuda or auto")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA GPU is visible; use trainer=cpu or trainer.device=auto")
    return torch.device(choice)


def use_bf16(trainer_cfg, device: torch.device) -> bool:
    if trainer_cfg.bf16 == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    if trainer_cfg.bf16 and device.type != "cuda":
        raise ConfigError("trainer.bf16=true needs a CUDA GPU; use trainer.bf16=false or auto on CPU")
    return bool(trainer_cfg.bf16)


class Collator:
    """A built model's batches of a task's features (`TaskKind.collate`): padded to the model's length
    where its family needs it (BigBird), with a global attention mask where it takes one (Longformer, LED).
    `seed`: training's, for the random draws of a kind that corrupts its inputs (masked LM); each dataloader
    worker draws from its own generator. None: evaluation."""

    def __init__(self, built, task, seed: int | None = None):
        self.task, self.kind, self.tokenizer = task, task_kind(task), built.tokenizer
        self.pad_to = built.max_length if built.family.fixed_padding else None
        self.global_attention = built.family.global_attention
        self.seed, self.rngs = seed, {}

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        rng = None
        if self.seed is not None:
            worker = getattr(torch.utils.data.get_worker_info(), "id", -1)
            rng = self.rngs.get(worker) or self.rngs.setdefault(
                worker, torch.Generator().manual_seed(self.seed * 1000 + worker + 1))
        return self.kind.collate(features, self.tokenizer, self.pad_to, self.global_attention, self.task, rng)


class MeasuredTrainer(Trainer):
    """Counts the tokens of every micro-batch and stops on a non-finite loss."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.token_log: list[tuple[int, int, int]] = []  # (optimizer step, non-pad tokens, padded tokens)

    def training_step(self, model, inputs, num_items_in_batch=None):
        mask = inputs["attention_mask"]
        self.token_log.append((self.state.global_step, int(mask.sum()), mask.numel()))
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            raise NonFiniteLoss(f"training loss became {loss.item()} at step {self.state.global_step + 1}; "
                                f"lower trainer.args.learning_rate or check the data")
        return loss


class StepClock(TrainerCallback):
    """Wall-clock time at the end of every optimizer step (device-synchronised)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        synchronize(self.device)
        self.ends.append(time.perf_counter())


class TrainLog(TrainerCallback):
    """The Trainer's logs (loss, gradient norm and learning rate every `logging_steps`, its summary at the
    end) as JSON lines in a file of the run dir, not on the console, where the progress bar stays."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": state.global_step, **logs}) + "\n")


class ProgressBar(ProgressCallback):
    """The Trainer's progress bar without its log dictionaries (TrainLog keeps them)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


def training_arguments(cfg, output_dir: str, device: torch.device) -> TrainingArguments:
    args = dict(cfg.trainer.args)
    report_to = ["wandb"] if cfg.logger.name == "wandb" else ["none"]  # the Trainer's curves join the wandb run
    try:
        return TrainingArguments(output_dir=output_dir, seed=cfg.seed, use_cpu=device.type == "cpu",
                                 bf16=use_bf16(cfg.trainer, device), report_to=report_to,
                                 remove_unused_columns=False,  # the task kind's collate picks what the model takes
                                 **args)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"trainer.args: {err} (keys are transformers.TrainingArguments names)") from None


def train(built, train_ds, cfg, args: TrainingArguments, device: torch.device, log_path: Path) -> dict:
    """Fine-tune `built.model` on `train_ds` with `args` (`training_arguments`), the Trainer's logs going to
    `log_path`; returns the efficiency figures of training."""
    collator = Collator(built, cfg.task, seed=cfg.seed)
    clock = StepClock(device)
    trainer = MeasuredTrainer(model=built.model, args=args, train_dataset=train_ds, data_collator=collator,
                              processing_class=built.tokenizer, callbacks=[clock, TrainLog(log_path)])
    trainer.pop_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback):
        trainer.add_callback(ProgressBar())
    try:
        with Phase(device) as phase:
            result = trainer.train()
    except KeyboardInterrupt as err:  # the figures of the steps that ran go into the record
        err.figures = efficiency_of(trainer.token_log, clock.ends, phase, math.nan)
        raise
    efficiency = efficiency_of(_all_ranks(trainer.token_log), clock.ends, phase, result.training_loss)
    efficiency["world_size"] = trainer.args.world_size
    with contextlib.suppress(OSError):  # the Trainer makes its output dir; keep it only if it saved something
        Path(args.output_dir).rmdir()
    return efficiency


def _all_ranks(token_log: list) -> list:
    """Under DDP, every rank's token counts (throughput is the whole job's); otherwise `token_log`."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return token_log
    logs = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(logs, token_log)
    return [entry for log_ in logs for entry in log_]


def efficiency_of(token_log, step_ends, phase: Phase, final_loss: float) -> dict:
    """Throughput over the optimizer steps after the first (which pays for warm-up), or over the
    whole phase when there was only one step."""
    steps = len(step_ends)
    if steps >= 2:
        seconds = step_ends[-1] - step_ends[0]
        tokens = [(t, p) for step, t, p in token_log if step >= 1]
    else:
        seconds = phase.seconds
        tokens = [(t, p) for _, t, p in token_log]
    real, padded = sum(t for t, _ in tokens), sum(p for _, p in tokens)
    return {
        "train_tokens": real,  # non-padding tokens of the timed steps, all ranks
        "train_tokens_per_s": real / seconds if seconds > 0 else math.nan,
        "train_padded_tokens_per_s": padded / seconds if seconds > 0 else math.nan,
        "train_step_s": seconds / max(steps - 1, 1) if steps >= 2 else phase.seconds,
        "train_steps": steps,
        "train_peak_mem_mb": phase.peak_mem_mb,
        "train_s": phase.seconds,
        "train_loss": final_loss,
        "train_busy_elsewhere": phase.busy_elsewhere,  # share of the CPUs other processes used (measure.py)
    }
