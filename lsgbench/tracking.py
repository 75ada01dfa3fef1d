"""Experiment trackers: `logger=none` (default) or `logger=wandb` (offline unless WANDB_MODE says so)."""

from __future__ import annotations

from omegaconf import OmegaConf

from .errors import ConfigError


class NoTracker:
    def finish(self, record: dict) -> None:
        pass


class WandbTracker:
    """One wandb run per lsgbench run: config up front, metrics and efficiency at the end.
    The HF Trainer logs its training curves into the same run (report_to=wandb). The runs of one
    sweep share a group (the sweep's id) unless logger.group names one."""

    def __init__(self, cfg, record: dict):
        import wandb

        logger = cfg.logger
        self.wandb = wandb
        self.run = wandb.init(project=logger.project, entity=logger.entity, group=logger.group or record["sweep"],
                              mode=logger.mode, name=record["run_id"], tags=list(logger.tags),
                              config=OmegaConf.to_container(cfg, resolve=True), reinit="finish_previous")

    def finish(self, record: dict) -> None:
        summary = {f"final/{k}": v for k, v in record["metrics"].items()}
        summary.update({f"efficiency/{k}": v for k, v in record["efficiency"].items() if isinstance(v, (int, float))})
        summary["status"] = record["status"]
        self.run.summary.update(summary)
        self.run.finish(exit_code=0 if record["status"] == "ok" else 1)


def make_tracker(cfg, record: dict):
    if cfg.logger.name == "wandb":
        return WandbTracker(cfg, record)
    if cfg.logger.name == "none":
        return NoTracker()
    raise ConfigError(f"logger={cfg.logger.name!r} is unknown; choose none or wandb")
