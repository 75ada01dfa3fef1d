"""Full attention: the backbone's own softmax(QK^T)V over every key, through transformers'
`sdpa` (PyTorch's fused kernels) or `eager` (the plain matrix products, for the benchmark)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F

from .blocks import keep_mask, pattern_attention
from .knobs import Knobs

IMPLEMENTATIONS = ("sdpa", "eager")


@dataclasses.dataclass(frozen=True)
class FullKnobs(Knobs):
    name: ClassVar[str] = "full"
    implementation: str  # transformers' attn_implementation: sdpa | eager

    @classmethod
    def labelled(cls, attention) -> tuple[str, ...]:
        return () if attention.get("implementation", "sdpa") == "sdpa" else ("implementation",)  # sdpa: the default

    def check(self) -> None:
        if self.implementation not in IMPLEMENTATIONS:
            raise self.bad("implementation", f"is unknown; choose one of {list(IMPLEMENTATIONS)}")

    @property
    def hf_implementation(self) -> str:
        return self.implementation

    def attend(self, query, key, value, keep, scaling, dropout, causal=False):
        """What the implementation computes, on [B, H, N, D] (the attention-only benchmark)."""
        N = query.shape[2]
        mask = None if keep is None else keep_mask(query, keep)[:, None, None, :]
        if causal:
            past = torch.ones(N, N, dtype=torch.bool, device=query.device).tril()
            mask = past if mask is None else mask & past
        if self.implementation == "sdpa":
            return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling)
        scores = query @ key.transpose(-1, -2) * (query.shape[-1] ** -0.5 if scaling is None else scaling)
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        return F.dropout(scores.softmax(-1), dropout) @ value

    def reference(self, query, key, value, keep, scaling, causal=False):
        N = query.shape[2]
        pattern = torch.ones(N, N, dtype=torch.bool, device=query.device)
        return pattern_attention(query, key, value, keep, pattern, query.shape[-1] ** -0.5 if scaling is None else scaling,
                                 causal)
