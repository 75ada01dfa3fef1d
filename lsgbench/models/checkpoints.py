"""Saved converted checkpoints, lsgbench's and ccdv's: the base architecture's config and weights
plus `global_embeddings.weight` (512 rows) and whatever modules the variant adds (SPADE's branch).
The knobs sit in the config (see `ccdv.stored_knobs`)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..attention import LongKnobs
from ..errors import ConfigError
from .conversion import install


def checkpoint_tensors(checkpoint_dir: str, names: list[str]) -> dict[str, torch.Tensor]:
    """The tensors of a saved checkpoint (safetensors or .bin files) for the model's `names`; a saved
    name may lack the head model's prefix (a checkpoint of the bare encoder), as transformers allows."""
    def ours(saved: str) -> str | None:
        return next((n for n in names if n == saved or n.split(".", 1)[-1] == saved), None)

    files = sorted(Path(checkpoint_dir).glob("*.safetensors")) or sorted(Path(checkpoint_dir).glob("*.bin"))
    tensors = {}
    for file in files:
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as f:
                tensors.update({ours(k): f.get_tensor(k) for k in f.keys() if ours(k)})
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
            tensors.update({ours(k): v for k, v in state.items() if ours(k)})
    return tensors


def load_converted(checkpoint_dir: str, model, family: str, knobs: LongKnobs):
    """Install a saved converted model's variant on the loaded base model, and load the weights
    conversion added (global embeddings, the variant's modules)."""
    base_keys = set(model.state_dict())
    ref = model.get_input_embeddings().weight
    install(model, family, knobs, nn.Embedding(LongKnobs.MAX_GLOBAL_TOKENS, ref.shape[1]).to(ref.device, ref.dtype))
    added = [k for k in model.state_dict() if k not in base_keys]
    saved = checkpoint_tensors(checkpoint_dir, added)
    if missing := [k for k in added if k not in saved]:
        raise ConfigError(f"{checkpoint_dir} has a converted ({knobs.name}) config but lacks the weights "
                          f"{missing[:3]} that conversion adds")
    model.load_state_dict(saved, strict=False)
    return model
