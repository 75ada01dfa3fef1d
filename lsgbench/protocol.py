"""Pretrain, then fine-tune (Xiong et al. 2022's protocol; the Longformer's continued pretraining): a run whose
config sets `pretrain` first runs the masked-LM pretraining of its model, then fine-tunes what that saved.

    python -m lsgbench -m experiment=pretrain_finetune attention=lsg,local,full task=synth_keys,imdb

The pretraining run is this run's config with the task replaced by `pretrain.task`, the trainer's settings left at
their preset and `pretrain.overrides` applied (its budget): the same backbone, attention, length and seed. It is an ordinary run with its own record,
so it is reused from the store like any run: the second task of a variant, or a sweep run again after an
interruption, finds it done. The fine-tuning run then loads it (`model.pretrained=run:<run_id>`); its record
names the pretraining run (`provenance.pretrained_run`), which the report pairs with it.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf

from . import pipeline

# What the pretraining does not take from this run: its task, its trainer settings (the budget: pretraining has its
# own in pretrain.overrides; the trainer preset, trainer=gpu, is shared) and the pretraining spec itself.
_OWN = re.compile(r"^[+~]*(task([.=]|$)|trainer\.|pretrain([.=]|$))")


def pretraining_overrides(cfg, overrides: list[str]) -> list[str]:
    """The overrides of the run that pretrains this run's model."""
    return [*[o for o in overrides if not _OWN.match(o)], f"task={cfg.pretrain.task}", "pretrain=null",
            *cfg.pretrain.overrides]


def run(cfg, output_dir: str | Path, overrides: list[str], sweep: str | None = None) -> tuple[dict, dict]:
    """(the pretraining record, the fine-tuning record) of a run whose config sets `pretrain`. Call it inside a
    Hydra app (or `hydra.initialize_config_dir`): the pretraining config is composed."""
    from hydra import compose

    pre_overrides = pretraining_overrides(cfg, overrides)
    pre = pipeline.run(compose("config", overrides=pre_overrides), Path(output_dir) / "pretrain", pre_overrides, sweep)
    OmegaConf.update(cfg, "model.pretrained", f"run:{pre['run_id']}")
    OmegaConf.update(cfg, "model.init", "pretrained")
    return pre, pipeline.run(cfg, output_dir, overrides, sweep)
