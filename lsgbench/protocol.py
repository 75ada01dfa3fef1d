"""Pretrain, then fine-tune (Xiong et al. 2022's protocol; the Longformer's continued pretraining): a run whose
config sets `pretrain` first runs the masked-LM pretraining of its model, then fine-tunes what that saved.

    python -m lsgbench -m experiment=pretrain_finetune attention=lsg,local,full task=synth_keys,imdb

The pretraining run is this run's config with the task replaced by `pretrain.task` and `pretrain.overrides`
applied (its budget): the same backbone, attention, length and seed. It is an ordinary run with its own record,
so it is reused from the store like any run: the second task of a variant, or a sweep run again after an
interruption, finds it done. The fine-tuning run then loads it (`model.pretrained=run:<run_id>`); its record
names the pretraining run (`provenance.pretrained_run`), which the report pairs with it.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf

from . import pipeline

_TASK = re.compile(r"^[+~]*(task|pretrain)([.=]|$)")  # this run's task, and the pretraining spec itself


def pretraining_config(cfg, overrides: list[str]):
    """The config of the run that pretrains this run's model (Hydra's compose: call it inside a Hydra app)."""
    from hydra import compose

    spec = cfg.pretrain
    kept = [o for o in overrides if not _TASK.match(o)]
    return compose("config", overrides=[*kept, f"task={spec.task}", "pretrain=null", *spec.overrides])


def run(cfg, output_dir: str | Path, overrides: list[str], sweep: str | None = None) -> tuple[dict, dict]:
    """(the pretraining record, the fine-tuning record) of a run whose config sets `pretrain`."""
    output_dir = Path(output_dir)
    pre_cfg = pretraining_config(cfg, overrides)
    pre_overrides = [*[o for o in overrides if not _TASK.match(o)], f"task={cfg.pretrain.task}",
                     *cfg.pretrain.overrides]
    pre = pipeline.run(pre_cfg, output_dir / "pretrain", pre_overrides, sweep)
    OmegaConf.update(cfg, "model.pretrained", f"run:{pre['run_id']}")
    OmegaConf.update(cfg, "model.init", "pretrained")
    return pre, pipeline.run(cfg, output_dir, overrides, sweep)
