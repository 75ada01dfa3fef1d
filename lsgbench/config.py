"""Where the Hydra configs live, and the resolvers they use. Light on purpose: the benchmark and
the tests import it without the training pipeline."""

from __future__ import annotations

import uuid
from pathlib import Path

from omegaconf import OmegaConf


def config_dir() -> str:
    """conf/ ships inside the wheel as lsgbench/conf; a source checkout has it beside the package."""
    packaged = Path(__file__).resolve().parent / "conf"
    return str(packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "conf")


def register_resolvers() -> None:
    """`${uid:}`: a random id, one per config (cached), for output dirs that never collide;
    `${floordiv:a,b}`: a // b and at least 1, e.g. a batch size that holds tokens per batch constant."""
    if not OmegaConf.has_resolver("uid"):
        OmegaConf.register_new_resolver("uid", lambda: uuid.uuid4().hex[:6], use_cache=True)
    if not OmegaConf.has_resolver("floordiv"):
        OmegaConf.register_new_resolver("floordiv", lambda a, b: max(int(a) // int(b), 1))


register_resolvers()
