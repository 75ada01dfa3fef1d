"""The composed config of a run, checked whole before anything is read or built.

Every key must be one lsgbench reads: the keys of a group are those of its shipped base file (the one
place where each key has its default), so an unknown key, given with `+` or in a config file of one's
own, is an error naming it, its group and the keys there. Every number a user sets is checked against
its range, with a message naming the key, the value and what is allowed. The attention knobs are
checked by their variant's knobs class, the task's own settings by its kind, `trainer.args` against
transformers' TrainingArguments.
"""

from __future__ import annotations

from omegaconf import OmegaConf

from .attention import variant
from .config import file_keys, shipped_dir
from .errors import ConfigError, choice, integer, number, raise_all, unknown_keys
from .kinds import task_kind
from .models import TRAINABLE
from .models.artifacts import RUN_PREFIX
from .models.conversion import POSITION_INITS
from .synthetic import check_knobs

# ---------------------------------------------------------------- a run's config

RUN_GROUPS = ("paths", "task", "model", "trainer", "logger")
# trainer.args lsgbench checks itself (TrainingArguments takes zero or negative values of them), with their minimum.
TRAINER_INTEGERS = {"per_device_train_batch_size": 1, "per_device_eval_batch_size": 1,
                    "gradient_accumulation_steps": 1, "max_steps": -1}
# TrainingArguments that lsgbench sets from other settings.
TRAINER_SET = {"output_dir": "the run dir", "seed": "seed", "use_cpu": "trainer.device", "bf16": "trainer.bf16",
               "report_to": "logger", "remove_unused_columns": "the task kind (its collate picks the model's inputs)"}


def check_paths_and_model(cfg) -> list[str]:
    """What is wrong with the groups a run and the benchmark share: paths, and the model with its attention
    knobs (their names, with a close match, and their values: the variant's knobs class)."""
    problems = unknown_keys(cfg.paths, "paths", file_keys("paths", "default.yaml"))
    problems += unknown_keys(cfg.model, "model", [*file_keys("model", "hf.yaml"), "attention"])
    attention = cfg.model.get("attention") or {}
    try:
        knobs = variant(attention.get("type"))
    except ConfigError as err:
        return [*problems, str(err)]
    wrong = unknown_keys(attention, "model.attention", ["type", *knobs.knob_names()], f"{knobs.name} attention")
    if not wrong:  # names sound: the values, checked as the kernel will take them
        try:
            knobs.from_config(attention)
        except ConfigError as err:
            wrong.append(str(err))
    return problems + wrong


def check_run_config(cfg) -> None:
    """One ConfigError naming every unknown key and every number out of range in a run's config."""
    kind = task_kind(cfg.task)
    task, model = cfg.task, cfg.model
    problems = unknown_keys(cfg, "", [*file_keys("config.yaml"), *RUN_GROUPS])
    problems += check_paths_and_model(cfg)
    problems += unknown_keys(task, "task", file_keys("task", f"{kind.name}.yaml"), f"{kind.name} tasks")
    problems += unknown_keys(cfg.trainer, "trainer", file_keys("trainer", "default.yaml"))
    loggers = sorted(p.stem for p in (shipped_dir("conf") / "logger").glob("*.yaml"))
    if cfg.logger.get("name") not in loggers:
        problems.append(f"logger={cfg.logger.get('name')!r} is unknown; choose one of {loggers}")
    else:
        problems += unknown_keys(cfg.logger, "logger", file_keys("logger", f"{cfg.logger.name}.yaml"))
    if task.get("hub"):
        problems += unknown_keys(task.hub, "task.hub", ("path", "name", "revision"))
    if task.get("columns"):
        problems += unknown_keys(task.columns, "task.columns", kind.columns(task),
                                 "the unified columns, each naming its column in the source")
    if task.get("synthetic"):
        problems += check_knobs(task)
    if cfg.pretrain is not None:
        problems += unknown_keys(cfg.pretrain, "pretrain", ("task", "overrides"))
        if not isinstance(cfg.pretrain.get("task"), str) or not OmegaConf.is_list(cfg.pretrain.get("overrides")):
            problems.append(f"pretrain={OmegaConf.to_container(cfg.pretrain)} must be {{task: <a task name>, "
                            f"overrides: [<override>, ...]}}")
    problems += _trainer_args(cfg.trainer.args)
    problems += integer("seed", cfg.seed, 0)
    problems += integer("model.max_length", model.max_length, 1, optional=True)
    problems += integer("model.eval_max_length", model.eval_max_length, 1, optional=True)
    problems += choice("model.position_init", model.position_init, POSITION_INITS)
    problems += choice("trainer.trainable", cfg.trainer.trainable, TRAINABLE)
    if cfg.save_model not in (None, True, False):
        problems.append(f"save_model={cfg.save_model!r} must be true, false or null (the task kind decides)")
    if str(model.pretrained).startswith(RUN_PREFIX) and model.init != "pretrained":
        problems.append(f"model.pretrained={model.pretrained} loads a run's model, but model.init={model.init}; "
                        f"set model.init=pretrained")
    problems += integer("model.max_positions", model.max_positions, 1)
    problems += integer("model.tokenizer_vocab_size", model.tokenizer_vocab_size, 300)  # byte-level BPE: 256 + specials
    problems += integer("task.max_source_length", task.max_source_length, 1)
    problems += integer("task.max_train_samples", task.max_train_samples, 1, optional=True)
    problems += integer("task.max_eval_samples", task.max_eval_samples, 1, optional=True)
    problems += integer("task.min_eval_examples", task.min_eval_examples, 0)
    problems += number("task.carve_fraction", task.carve_fraction, above=0, below=0.5)
    if not OmegaConf.is_list(task.metrics) or not task.metrics:
        problems.append(f"task.metrics={task.metrics!r} must list metrics; {kind.name} has {list(kind.metric_names)}")
    elif not_computed := [m for m in task.metrics if m not in kind.metric_names]:
        problems.append(f"task.metrics: {kind.name} computes no {not_computed}; it has {list(kind.metric_names)}")
    problems += kind.check(task)
    raise_all(problems)


def _trainer_args(args) -> list[str]:
    """trainer.args: names TrainingArguments takes, not set by lsgbench, and numbers in range."""
    import dataclasses

    from transformers import TrainingArguments

    names = [f.name for f in dataclasses.fields(TrainingArguments) if f.init and f.name not in TRAINER_SET]
    problems = unknown_keys({k: v for k, v in args.items() if k not in TRAINER_SET}, "trainer.args", names,
                            "transformers.TrainingArguments")
    problems += [f"trainer.args.{k} is set by lsgbench from {TRAINER_SET[k]}; set that instead"
                 for k in args if k in TRAINER_SET]
    problems += [p for k, minimum in TRAINER_INTEGERS.items() if k in args
                 for p in integer(f"trainer.args.{k}", args[k], minimum)]
    max_steps = args.get("max_steps", -1)
    if not (isinstance(max_steps, int) and max_steps > 0) and "num_train_epochs" in args:  # epochs decide
        problems += number("trainer.args.num_train_epochs", args.num_train_epochs, above=0)
    if "learning_rate" in args:
        problems += number("trainer.args.learning_rate", args.learning_rate, at_least=0)
    return problems
