"""Local-window attention (Xiong et al. 2022, "Simple Local Attentions Remain Competitive").

Shapes: B batch, H heads, N tokens, D head dim; g global tokens lead the sequence.
- mode="sliding": a non-global query at i sees non-global keys j with |i - j| <= w = window // 2.
  Computed over blocks of w queries: block i's keys are blocks i-1, i, i+1 (3w keys) under a
  band mask, so memory is O(N * (g + 3w)).
- mode="disjoint": non-global positions form blocks of b = block_size; a query sees its own block.
Global tokens attend to every key and every query attends to them. Padding never gets weight.
`local_attention_reference` builds the same pattern as a dense mask (the oracle).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F

from .blocks import global_query_attention, neighbour_blocks, pattern_attention, split_and_pad
from .knobs import LongKnobs

MODES = ("sliding", "disjoint")


@dataclasses.dataclass(frozen=True)
class LocalKnobs(LongKnobs):
    name: ClassVar[str] = "local"
    LABELLED: ClassVar = ("mode", "window", "block_size", "num_global_tokens")
    SHORT: ClassVar = {"window": "w", "block_size": "b", "num_global_tokens": "g"}
    mode: str        # sliding | disjoint
    window: int      # sliding: total width; a query sees window // 2 tokens on each side
    block_size: int  # disjoint: block length

    @classmethod
    def labelled(cls, attention: Mapping) -> tuple[str, ...]:
        unused = {"sliding": "block_size", "disjoint": "window"}.get(attention.get("mode"))
        return tuple(k for k in cls.LABELLED if k != unused)

    def check(self) -> None:
        super().check()
        if self.mode not in MODES:
            raise self.bad("mode", f"is unknown; choose one of {list(MODES)}")
        if self.mode == "sliding" and self.window < 2:
            raise self.bad("window", "must be >= 2 (a query sees window // 2 tokens on each side)")
        if self.mode == "disjoint" and self.block_size < 1:
            raise self.bad("block_size", "must be >= 1")

    def full_attention_at(self, length: int) -> bool:
        return length <= (self.window // 2 + 1 if self.mode == "sliding" else self.block_size)

    def _kernel_args(self) -> dict:
        return dict(mode=self.mode, window=self.window, block_size=self.block_size,
                    num_global_tokens=self.num_global_tokens)

    def attend(self, query, key, value, keep, scaling, dropout):
        return local_attention(query, key, value, keep, **self._kernel_args(), scaling=scaling, dropout=dropout)

    def reference(self, query, key, value, keep, scaling):
        return local_attention_reference(query, key, value, keep, **self._kernel_args(), scaling=scaling)


def local_attention(query, key, value, keep=None, *, mode, window, block_size, num_global_tokens, scaling=None,
                    dropout=0.0):
    """Local attention over [B, H, N, D]; keep [B, N] with 1 = token, 0 = padding (None: no padding)."""
    B, H, N, D = query.shape
    g = min(num_global_tokens, N)
    scaling = D ** -0.5 if scaling is None else scaling
    b = window // 2 if mode == "sliding" else block_size
    keep, qx, kx, vx, keep_x = split_and_pad(query, key, value, keep, g, b)
    Np = qx.shape[2]
    nb = Np // b

    outputs = [global_query_attention(query, key, value, keep, g, scaling, dropout)] if g else []
    if Np == 0:
        return torch.cat(outputs, dim=2)

    if mode == "sliding":  # blocks i-1, i, i+1 under the band |i - j| <= w
        def blocks(x, fill):
            return neighbour_blocks(x, b, fill)
        offset = torch.arange(3 * b, device=query.device)[None, :] - b - torch.arange(b, device=query.device)[:, None]
        band = offset.abs() <= b                                   # [b, 3b]: key j - query i
    else:
        def blocks(x, fill):  # [B, ..., Np, *] -> [B, ..., nb, b, *]
            dim = 2 if x.dim() == 4 else 1
            return x.unflatten(dim, (nb, b))
        band = torch.ones(b, b, dtype=torch.bool, device=query.device)

    keys, values = blocks(kx, 0.0), blocks(vx, 0.0)                 # [B, H, nb, K, D]
    mask = blocks(keep_x, False)[:, :, None, :] & band              # [B, nb, b, K]
    if g:
        keys = torch.cat([key[:, :, None, :g].expand(B, H, nb, g, D), keys], dim=3)
        values = torch.cat([value[:, :, None, :g].expand(B, H, nb, g, D), values], dim=3)
        mask = torch.cat([keep[:, None, None, :g].expand(B, nb, b, g), mask], dim=3)
    K = keys.shape[3]
    # Heads move next to the query axis so that the [B * nb, 1, b, K] mask broadcasts over them.
    to_blocks = lambda x, n: x.transpose(1, 2).reshape(B * nb, H, n, D)  # noqa: E731
    out = F.scaled_dot_product_attention(to_blocks(qx.view(B, H, nb, b, D), b), to_blocks(keys, K),
                                         to_blocks(values, K), attn_mask=mask.reshape(B * nb, 1, b, K),
                                         dropout_p=dropout, scale=scaling)
    out = out.masked_fill(~mask.any(-1).reshape(B * nb, 1, b, 1), 0.0)
    outputs.append(out.view(B, nb, H, b, D).transpose(1, 2).reshape(B, H, Np, D)[:, :, : N - g])
    return torch.cat(outputs, dim=2)


def local_attention_reference(query, key, value, keep=None, *, mode, window, block_size, num_global_tokens,
                              scaling=None):
    """The same pattern as a dense mask over all keys."""
    N, D = query.shape[2:]
    g = min(num_global_tokens, N)
    pos = torch.arange(N, device=query.device)
    is_global = pos < g
    if mode == "sliding":
        near = (pos[:, None] - pos[None, :]).abs() <= window // 2
    else:
        block = (pos - g).div(block_size, rounding_mode="floor")
        near = block[:, None] == block[None, :]
    pattern = is_global[:, None] | is_global[None, :] | near
    return pattern_attention(query, key, value, keep, pattern, D ** -0.5 if scaling is None else scaling)
