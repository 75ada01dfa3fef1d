"""The flow of one run: data -> model -> train -> evaluate -> record.

`run(cfg, output_dir, overrides)` never raises for a failed run: whatever happens, it writes the
run record (status ok | failed | oom | invalid, with the error) to `output_dir/run_record.json` and to
the results store `cfg.paths.store_dir/<run_id>.json`, and returns it. A run refused before training
for a mistake in its config or data is `invalid`: the report lists it under its table, never as a row.
Ctrl-C and SIGTERM write an `interrupted` record with the figures so far and then stop.

A run trains `trainer.trainable` parameters (all; none: it evaluates the model as loaded), keeps its model
when `save_model` says so (the record's `artifact`; `model.pretrained=run:<run_id>` loads it later) and
evaluates at `model.eval_max_length` (the model converted to that length after training) when it is set.

A configuration the store already holds an ok record of (same config, data and checkpoint fingerprints), made on
the same device and number of processes after its attention kernel last changed, is not run again (`force=true` reruns it; changes to lsgbench's code are not detected):
the stored record is copied to `output_dir` and returned with `"reused": true`. Under torchrun
(DDP) every rank trains; rank 0 alone evaluates and writes the record, also of a failed run.
Processes sharing a store run one configuration at a time (`record.Claim`): a second sweep over the
same points waits for the first and then reuses its records.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import traceback
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from . import record as rec
from .attention.knobs import backends_ran
from .checks import check_run_config
from .data import TaskData, load_task_data, tokenize
from .errors import ConfigError, Terminated, raise_all
from .evaluation import evaluate
from .kinds import task_kind
from .measure import device_name
from .models import at_length, build_model, checkpoint_config, freeze
from .models import artifacts
from .tracking import NoTracker, make_tracker
from .train import NonFiniteLoss, resolve_device, train, training_arguments, use_bf16

log = logging.getLogger(__name__)


def rank() -> int:
    return int(os.environ.get("RANK", 0))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def run(cfg, output_dir: str | Path, overrides: list[str] | None = None, sweep: str | None = None) -> dict:
    """`sweep`: the id of the multirun this run belongs to (the wandb group of its runs)."""
    output_dir = Path(output_dir)
    record = rec.new_run_record(cfg.task.name, cfg.task.kind, cfg.model.name, cfg.seed, overrides, sweep)
    tracker = NoTracker()
    try:
        try:
            record["config"] = OmegaConf.to_container(cfg, resolve=True)
        except OmegaConfBaseException as err:  # e.g. an interpolation over a key that is null
            raise ConfigError(f"the config does not resolve: {' '.join(str(err).split())}") from None
        record["attention"] = record["config"]["model"]["attention"]
        check_run_config(cfg)  # every key and number, before anything is read or built
        rec.check_writable(cfg.paths.store_dir, "paths.store_dir")
        here = device_name(resolve_device(cfg.trainer))
        # run:<id> names the model a run saved; the weights' fingerprint keys reuse (a checkpoint trained again
        # in place is another run).
        origin = {}
        if cfg.model.init == "pretrained":
            cfg.model.pretrained, origin = artifacts.resolve(cfg.model.pretrained, cfg.paths.store_dir)
            if cfg.model.max_length is None and origin.get("pretrained_max_length"):  # it keeps the length it had
                cfg.model.max_length = origin["pretrained_max_length"]
                log.info("model.max_length is unset: the model of run %s keeps the length it trained at, %d tokens "
                         "(model.max_length=N trains it at another)", origin["pretrained_run"], cfg.model.max_length)
        record["provenance"].update(origin)
        data = preflight(cfg)  # before the reuse check: the examples are part of what a run computes
        record["provenance"].update(dataset=data.source, splits=data.splits, n_train=len(data.train),
                                    n_eval=len(data.eval), eval_overlap=data.eval_overlap,
                                    eval_shared_documents=data.eval_shared_documents,
                                    small_eval=len(data.eval) < cfg.task.min_eval_examples,
                                    data_fingerprint=data.fingerprint)
        if data.notes:
            record["provenance"]["data_notes"] = data.notes
        # One process at a time per configuration and data (under torchrun the ranks are one job).
        weights = origin.get("pretrained_fingerprint")
        claim = rec.Claim(cfg.paths.store_dir, "-".join(filter(None, (rec.config_hash(record["config"]),
                                                                        data.fingerprint, weights)))) \
            if world_size() == 1 else contextlib.nullcontext()
        with claim:
            done = None if cfg.force else rec.find_done(cfg.paths.store_dir, record["config"], data.fingerprint,
                                                        here, world_size(), weights)
            if done:
                log.info("skipped: the store %s holds ok run %s of this configuration (force=true reruns it)",
                         cfg.paths.store_dir, done["run_id"])
                if rank() == 0:
                    rec.write_json_atomic(output_dir / "run_record.json", done)
                return {**done, "reused": True}
            record["env"] = rec.environment()
            if rank() == 0:
                tracker = make_tracker(cfg, record)
            if not _execute(cfg, record, data, output_dir):
                return record  # a DDP rank > 0: rank 0 writes the record
            record["status"] = "ok"
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: keep what was measured, then stop (a sweep stops too)
        how = "by SIGTERM " if isinstance(err, Terminated) else ""
        record.update(status="interrupted", error=f"interrupted {how}during {record['stage']}")
        record["efficiency"].update(getattr(err, "figures", {}))
        _write(cfg, record, output_dir, tracker)
        raise
    except torch.OutOfMemoryError as err:
        record.update(status="oom", error=f"out of memory: {err}".strip())
    except (ConfigError, NonFiniteLoss) as err:  # the user's to fix: the message says how; debug=true adds where
        record["error"] = str(err)
        if record["stage"] == "setup":  # refused before training: on record, never a row of a comparison
            record["status"] = "invalid"
        if cfg.debug:
            log.error("run failed:\n%s", traceback.format_exc())
    except Exception as err:  # a bug or a library error: keep the run's record, say what broke
        record["error"] = f"{type(err).__name__}: {err}"
        log.error("run failed:\n%s", traceback.format_exc())
    if rank() != 0:  # rank 0 fails too (its collectives break) and records it
        log.error("rank %d: %s", rank(), record["error"])
        return record
    _write(cfg, record, output_dir, tracker)
    return record


def _write(cfg, record: dict, output_dir: Path, tracker) -> None:
    rec.write_json_atomic(output_dir / "run_record.json", record)
    try:
        rec.write_json_atomic(Path(cfg.paths.store_dir) / f"{record['run_id']}.json", record)
    except OSError as err:  # an unwritable store (the run's own error then says so): the run dir keeps it
        log.error("the record stays in %s only: %s", output_dir, err)
    try:
        tracker.finish(record)
    except Exception as err:  # the record is safe on disk; a tracker failure must not hide it
        log.error("tracker failed to finish: %s", err)


def preflight(cfg) -> TaskData:
    """Load the task's data and check that the model's checkpoint can be had, reporting every problem
    at once (offline, the data and the checkpoint are usually both missing)."""
    problems, data = [], None
    try:
        data = load_task_data(cfg.task, evaluate_only=cfg.trainer.trainable == "none")
    except ConfigError as err:
        problems.append(str(err))
    try:
        checkpoint_config(cfg.model)
    except ConfigError as err:
        problems.append(str(err))
    raise_all(problems)
    return data


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _note_backend(record: dict, phase: str) -> None:
    """record["attention_backend"][phase]: the backend (flex, blocks) and attention dropout lsgbench's kernel ran
    with."""
    if ran := backends_ran():
        record["attention_backend"][phase] = ran


def _execute(cfg, record: dict, data: TaskData, output_dir: Path) -> bool:
    """Fill `record`; False on a DDP rank > 0, which stops after training."""
    _seed_everything(cfg.seed)
    device = resolve_device(cfg.trainer)
    task = cfg.task
    kind = task_kind(task)
    cache_dir = Path(cfg.paths.cache_dir).expanduser()
    args = training_arguments(cfg, str(output_dir / "checkpoints"), device)  # its own checks, before the model
    # (a random-init model evaluated without training has its tokenizer trained on the evaluation texts)
    built = build_model(cfg.model, task, kind.tokenizer_texts(data.train or data.eval, task), cache_dir)
    record["max_length"] = built.max_length
    record["attention"] = built.attention
    record["provenance"].update(model_init=built.init, tokenizer=built.tokenizer_source,
                                n_params=sum(p.numel() for p in built.model.parameters()),
                                positions_added=built.positions_added)
    if pooling := getattr(built.model.config, "classifier_pooling", None):  # ModernBERT: cls | mean
        record["provenance"]["classifier_pooling"] = pooling

    record["eval_max_length"] = eval_length = built.eval_max_length
    record["provenance"]["trainable"] = trainable = freeze(built, cfg.trainer.trainable)

    train_ds = tokenize(data.train, built.tokenizer, task, built.max_length, cache_dir) if data.train else None
    eval_ds = tokenize(data.eval, built.tokenizer, task, eval_length, cache_dir)
    record["provenance"]["truncation"] = {split: kind.truncation(ds, length, task) for split, ds, length
                                          in (("train", train_ds, built.max_length), ("eval", eval_ds, eval_length))
                                          if ds is not None}

    efficiency = record["efficiency"]  # filled as it is measured: a failed evaluation keeps the training figures
    efficiency["device"] = device_name(device)
    backends_ran()  # lsgbench's kernels name the backend each phase ran on (none for other attention)
    if trainable["parameters"]:
        record["stage"] = "train"
        efficiency.update(train(built, train_ds, cfg, args, device, output_dir / "train_log.jsonl"))
        _note_backend(record, "train")
    if rank() != 0:
        return False
    if kind.saves_model if cfg.save_model is None else cfg.save_model:
        record["artifact"] = artifacts.save(built.model, built.tokenizer, output_dir / "model")
    if eval_length != built.max_length:  # converted again, from the trained model, to the evaluation's length
        built = at_length(built, eval_length)
    record["stage"] = "evaluate"
    metrics, eval_eff, predictions = evaluate(built, eval_ds, data.eval, task,
                                              cfg.trainer.args.per_device_eval_batch_size, device,
                                              use_bf16(cfg.trainer, device))
    efficiency.update(eval_eff)
    _note_backend(record, "eval")
    record["metrics"] = metrics
    record["provenance"].update(kind.provenance(task))
    kind.write_predictions(output_dir / "predictions.json", [r["id"] for r in data.eval], predictions,
                           kind.targets(data.eval), task)
    record["stage"] = "done"
    return True
