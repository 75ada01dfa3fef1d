"""SPADE (Zuo et al. 2022): local attention in every encoder layer, and in `spade_layers` a
bidirectional S4D state-space branch beside it that gives the layer global reach at O(N log N). In a decoder
both run causally (the S4D branch forward in time only, as in the paper's language modelling).

Both branches read the layer's input; each output is layer-normalised, then they are combined
(concat -> Linear(2d -> d), or attention + combine_weight * SSM). The attention kernel and its
reference are local attention's.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import nn

from ..errors import ConfigError
from .blocks import keep_with_globals
from .local import LocalKnobs
from .s4d import S4D

COMBINES = ("concat", "add")


@dataclasses.dataclass(frozen=True)
class SpadeKnobs(LocalKnobs):
    name: ClassVar[str] = "spade"
    LABELLED: ClassVar = LocalKnobs.LABELLED + ("state_size", "combine")
    SHORT: ClassVar = {**LocalKnobs.SHORT, "state_size": "N"}
    ADDED_WEIGHTS: ClassVar = LocalKnobs.ADDED_WEIGHTS + (r"\.spade\.",)
    state_size: int                # S4D state size N (N/2 complex modes)
    s4d_init: str                  # lin (S4D-Lin) | inv (S4D-Inv)
    combine: str                   # concat | add
    combine_weight: float          # add: attention + combine_weight * SSM
    spade_layers: tuple[int, ...]  # encoder layers that get the S4D branch
    freeze_ssm: bool               # A and B fixed, as the SPADE authors do; C, dt, D train

    def check(self) -> None:
        super().check()
        if self.combine not in COMBINES:
            raise self.bad("combine", f"is unknown; choose one of {list(COMBINES)}")
        if any(i < 0 for i in self.spade_layers) or len(set(self.spade_layers)) < len(self.spade_layers):
            raise self.bad("spade_layers", "must be distinct encoder layer indices >= 0")
        try:
            S4D.check_settings(self.state_size, self.s4d_init)
        except ConfigError as err:
            raise ConfigError(f"{self.name} attention: {err}") from None

    def attend_cached(self, query, key, value, keep, scaling, start):
        raise NotImplementedError("spade attention cannot generate with a KV cache: its S4D branch keeps no "
                                  "recurrent state between steps")

    def reach(self):
        return None  # the S4D branch carries the whole past

    def add_modules(self, attention_modules: list, hidden_size: int, num_heads: int, causal: bool = False) -> None:
        if bad := [i for i in self.spade_layers if i >= len(attention_modules)]:
            raise self.bad("spade_layers", f"names layers {bad}, but the encoder has {len(attention_modules)}")
        for i in self.spade_layers:
            device = next(attention_modules[i].parameters()).device
            attention_modules[i].spade = SpadeBranch(hidden_size, self, causal).to(device)
            attention_modules[i].register_forward_hook(_spade_hook, with_kwargs=True)


class SpadeBranch(nn.Module):
    def __init__(self, hidden: int, knobs: SpadeKnobs, causal: bool = False):
        super().__init__()
        self.s4d = S4D(hidden, knobs.state_size, knobs.s4d_init, freeze=knobs.freeze_ssm, causal=causal)
        self.norm_attention, self.norm_ssm = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.combine, self.weight = knobs.combine, knobs.combine_weight
        self.mix = nn.Linear(2 * hidden, hidden) if self.combine == "concat" else None

    def forward(self, attention_out, hidden_states, keep):
        u = hidden_states * keep.unsqueeze(-1).to(hidden_states.dtype)  # padding must not enter the scan
        a, s = self.norm_attention(attention_out), self.norm_ssm(self.s4d(u))
        return self.mix(torch.cat([a, s], dim=-1)) if self.combine == "concat" else a + self.weight * s


def _spade_hook(module, args, kwargs, output):
    """After an encoder self-attention module: combine its output with the S4D branch's."""
    hidden = args[0] if args else kwargs["hidden_states"]
    mask = args[1] if len(args) > 1 else kwargs.get("attention_mask")
    keep = keep_with_globals(mask, *hidden.shape[:2], hidden.device)
    return (module.spade(output[0], hidden, keep), *output[1:])
