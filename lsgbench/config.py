"""Where the Hydra configs live, and the resolvers they use. Light on purpose: the benchmark and
the tests import it without the training pipeline."""

from __future__ import annotations

import uuid
from pathlib import Path

from omegaconf import OmegaConf


def shipped_dir(name: str) -> Path:
    """conf/ and tasks/ ship inside the wheel as lsgbench/<name>; a source checkout has them beside the package."""
    packaged = Path(__file__).resolve().parent / name
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / name


def config_dir() -> str:
    return str(shipped_dir("conf"))


def register_resolvers() -> None:
    """`${uid:}`: a random id, one per config (cached), for output dirs that never collide;
    `${floordiv:a,b}`: a // b and at least 1, e.g. a batch size that holds tokens per batch constant."""
    if not OmegaConf.has_resolver("uid"):
        OmegaConf.register_new_resolver("uid", lambda: uuid.uuid4().hex[:6], use_cache=True)
    if not OmegaConf.has_resolver("floordiv"):
        OmegaConf.register_new_resolver("floordiv", lambda a, b: max(int(a) // int(b), 1))


register_resolvers()
