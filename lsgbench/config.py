"""Where the Hydra configs live, and the resolvers they use. Light on purpose: the benchmark and
the tests import it without the training pipeline."""

from __future__ import annotations

import functools
import uuid
from pathlib import Path

from omegaconf import OmegaConf


def shipped_dir(name: str) -> Path:
    """conf/ and tasks/ ship inside the wheel as lsgbench/<name>; a source checkout has them beside the package."""
    packaged = Path(__file__).resolve().parent / name
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / name


def config_dir() -> str:
    return str(shipped_dir("conf"))


def file_keys(*parts: str, section: str | None = None) -> list[str]:
    """The keys a shipped config file defines (its defaults list and Hydra's settings aside), or those of one
    of its sections."""
    data = OmegaConf.to_container(OmegaConf.load(shipped_dir("conf").joinpath(*parts)))
    return list(data[section]) if section else [k for k in data if k not in ("defaults", "hydra")]


@functools.cache
def model_names() -> dict[str, tuple[str, str]]:
    """{model name: (backbone, attention it runs)} from conf/model. A saved combination names its
    backbone (`- roberta@model`) and variant (`override /attention: lsg`); other models are their
    own backbone, with full attention unless their file selects another (the peers)."""
    out = {}
    for path in sorted((shipped_dir("conf") / "model").glob("*.yaml")):
        backbone, attention = path.stem, "full"
        for entry in OmegaConf.to_container(OmegaConf.load(path)).get("defaults", []):
            if isinstance(entry, str) and entry.endswith("@model") and entry != "hf@model":
                backbone = entry.split("@")[0]
            elif isinstance(entry, dict) and "override /attention" in entry:
                attention = entry["override /attention"]
        out[path.stem] = (backbone, attention)
    return out


def attention_shorthand(arg: str) -> str:
    """`attention.<knob>=...` (with + ++ or ~ in front) is short for `model.attention.<knob>=...`:
    the attention group is mounted at model.attention."""
    prefix = arg[:len(arg) - len(arg.lstrip("+~"))]
    rest = arg[len(prefix):]
    return f"{prefix}model.{rest}" if rest.startswith("attention.") else arg


def register_resolvers() -> None:
    """`${uid:}`: a random id, one per config (cached), for output dirs that never collide;
    `${floordiv:a,b}`: a // b and at least 1, e.g. a batch size that holds tokens per batch constant."""
    if not OmegaConf.has_resolver("uid"):
        OmegaConf.register_new_resolver("uid", lambda: uuid.uuid4().hex[:6], use_cache=True)
    if not OmegaConf.has_resolver("floordiv"):
        OmegaConf.register_new_resolver("floordiv", lambda a, b: max(int(a) // int(b), 1))


register_resolvers()
