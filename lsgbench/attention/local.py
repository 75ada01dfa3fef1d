"""Local-window attention (Xiong et al. 2022, "Simple Local Attentions Remain Competitive").

Shapes: B batch, H heads, N tokens, D head dim; g global tokens lead the sequence.
- mode="sliding": a non-global query at i sees non-global keys j with |i - j| <= w = window // 2.
  Computed over blocks of w queries: block i's keys are blocks i-1, i, i+1 (3w keys) under a
  band mask, so memory is O(N * (g + 3w)).
- mode="disjoint": non-global positions form blocks of b = block_size; a query sees its own block.
Global tokens attend to every key and every query attends to them. Padding never gets weight.
Causal (decoders): the same restricted to keys at or before the query (blocks.py): sliding sees the
w tokens before it and itself (blocks i-1 and i), disjoint its block up to itself.
`local_attention_reference` builds the same pattern as a dense mask (the oracle).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F

from .blocks import (Piece, attend_pieces, block_pieces, clip, fit, global_query_pieces, keep_mask, neighbour_blocks,
                     pad_to_blocks, pattern_attention)
from .knobs import LongKnobs, check_backend, runs_flex, with_backend

MODES = ("sliding", "disjoint")


@dataclasses.dataclass(frozen=True)
class LocalKnobs(LongKnobs):
    name: ClassVar[str] = "local"
    KERNEL_CHANGED: ClassVar[str] = "20261202T045553"  # disjoint blocks run as pieces (commit 17bc731); SPADE's too
    LABELLED: ClassVar = ("mode", "window", "block_size", "num_global_tokens")
    SHORT: ClassVar = {"window": "w", "block_size": "b", "num_global_tokens": "g"}
    mode: str        # sliding | disjoint
    window: int      # sliding: total width; a query sees window // 2 tokens on each side
    block_size: int  # disjoint: block length
    backend: str     # auto | blocks | flex (knobs.BACKENDS)

    @classmethod
    def labelled(cls, attention: Mapping) -> tuple[str, ...]:
        unused = {"sliding": "block_size", "disjoint": "window"}.get(attention.get("mode"))
        return with_backend(tuple(k for k in cls.LABELLED if k != unused), attention)

    def check(self) -> None:
        super().check()
        check_backend(self)
        if self.mode not in MODES:
            raise self.bad("mode", f"is unknown; choose one of {list(MODES)}")
        if self.mode == "sliding" and self.window < 2:
            raise self.bad("window", "must be >= 2 (a query sees window // 2 tokens on each side)")
        if self.mode == "disjoint":
            self.check_at_least(block_size=1)

    def full_attention_at(self, length: int) -> bool:
        return length <= (self.window // 2 + 1 if self.mode == "sliding" else self.block_size)

    def _kernel_args(self) -> dict:
        return dict(mode=self.mode, window=self.window, block_size=self.block_size,
                    num_global_tokens=self.num_global_tokens)

    def grouped_kv(self, query, dropout):
        return runs_flex(self, query, dropout)  # FlexAttention's enable_gqa

    def attend(self, query, key, value, keep, scaling, dropout, causal=False):
        if runs_flex(self, query, dropout):
            from .flex import local_attention_flex
            return local_attention_flex(query, key, value, keep, **self._kernel_args(), scaling=scaling, causal=causal)
        return local_attention(query, key, value, keep, **self._kernel_args(), scaling=scaling, dropout=dropout,
                               causal=causal)

    def reference(self, query, key, value, keep, scaling, causal=False):
        return local_attention_reference(query, key, value, keep, **self._kernel_args(), scaling=scaling,
                                         causal=causal)

    def pattern(self, queries, keys, heads):
        return local_pattern(queries, keys, **self._kernel_args())[None]

    def reach(self):
        return self.window // 2 if self.mode == "sliding" else self.block_size - 1

    def earliest_key(self, position):
        if self.mode == "sliding":
            return position - self.window // 2
        g, b = self.num_global_tokens, self.block_size
        return g + (position - g) // b * b  # its block's first token


def local_attention(query, key, value, keep=None, *, mode, window, block_size, num_global_tokens, scaling=None,
                    dropout=0.0, causal=False):
    """Local attention over [B, H, N, D]; keep [B, N] with 1 = token, 0 = padding (None: no padding).
    Runs as pieces of a few blocks (blocks.attend_pieces): the gathered keys of one piece exist at a
    time, and backward regathers them instead of keeping them."""
    B, H, N, D = query.shape
    g = min(num_global_tokens, N)
    scaling = D ** -0.5 if scaling is None else scaling
    b = window // 2 if mode == "sliding" else block_size
    keep = keep_mask(query, keep)
    n = N - g
    nb = -(-n // b)
    inputs, pieces = [query, key, value], global_query_pieces(B, N, keep, g, scaling, dropout, causal)
    if n == 0:
        return attend_pieces(inputs, pieces, N, dropout=dropout > 0)

    keep_x = pad_to_blocks(keep[:, g:], b, dim=1, value=False)              # [B, Np]
    if mode == "sliding":  # blocks i-1, i, i+1 (causal: i-1, i) under the band -w <= j - i <= w (causal: <= 0)
        left, right = b, 0 if causal else b                                 # keys beyond each side of a block
        width = left + b + right
        offset = torch.arange(width, device=query.device)[None, :] - left - torch.arange(b, device=query.device)[:, None]
        band = (offset >= -b) & (offset <= right)                           # [b, width]: key j - query i
        block_keep = neighbour_blocks(keep_x, b, False)[..., :width]        # [B, nb, width]
    else:
        left = right = 0
        band = torch.ones(b, b, dtype=torch.bool, device=query.device)
        band = band.tril() if causal else band
        block_keep = keep_x.unflatten(1, (nb, b))                           # [B, nb, b]
    K = g + band.shape[1]

    def piece(r0, r1, i0, i1):
        nbc, Bc = i1 - i0, r1 - r0
        lo, hi = g + i0 * b, g + i1 * b                                    # this piece's queries
        around = (lo - left, hi + right)                                    # their keys

        def attend(q, k_glob, v_glob, k_loc, v_loc):
            q = fit(q, lo, hi, g, N).reshape(Bc, H, nbc, b, D)
            keys = fit(k_loc, *around, g, N).unfold(2, band.shape[1], b).movedim(-1, 3)   # [Bc, H, nbc, width, D]
            values = fit(v_loc, *around, g, N).unfold(2, band.shape[1], b).movedim(-1, 3)
            mask = block_keep[r0:r1, i0:i1, None, :] & band                                # [Bc, nbc, b, K]
            if g:
                keys = torch.cat([k_glob[:, :, None].expand(Bc, H, nbc, g, D), keys], dim=3)
                values = torch.cat([v_glob[:, :, None].expand(Bc, H, nbc, g, D), values], dim=3)
                mask = torch.cat([keep[r0:r1, None, None, :g].expand(Bc, nbc, b, g), mask], dim=3)
            # Heads move next to the query axis so that the [Bc * nbc, 1, b, K] mask broadcasts over them.
            to_blocks = lambda x, m: x.transpose(1, 2).reshape(Bc * nbc, H, m, D)  # noqa: E731
            out = F.scaled_dot_product_attention(to_blocks(q, b), to_blocks(keys, K), to_blocks(values, K),
                                                 attn_mask=mask.reshape(Bc * nbc, 1, b, K), dropout_p=dropout,
                                                 scale=scaling)
            out = out.masked_fill(~mask.any(-1).reshape(Bc * nbc, 1, b, 1), 0.0)
            return out.view(Bc, nbc, H, b, D).transpose(1, 2).reshape(Bc, H, nbc * b, D)[:, :, : min(hi, N) - lo]

        local = clip(*around, g, N)
        wins = ((0, *clip(lo, hi, g, N)), (1, 0, g), (2, 0, g), (1, *local), (2, *local))
        return Piece((r0, r1), (lo, min(hi, N)), wins, attend)

    pieces += [piece(r0, r1, i0, i1) for (r0, r1), (i0, i1) in block_pieces(B, nb, H * b * K, query.device)]
    return attend_pieces(inputs, pieces, N, dropout=dropout > 0)


def local_pattern(queries, keys, *, mode, window, block_size, num_global_tokens):
    """Which keys (positions [K]) the queries at positions [Q] see: bool [Q, K]."""
    g, q, k = num_global_tokens, queries[:, None], keys[None, :]
    if mode == "sliding":
        near = (q - k).abs() <= window // 2
    else:
        near = (q - g).div(block_size, rounding_mode="floor") == (k - g).div(block_size, rounding_mode="floor")
    return (q < g) | (k < g) | near


def local_attention_reference(query, key, value, keep=None, *, mode, window, block_size, num_global_tokens,
                              scaling=None, causal=False):
    """The same pattern as a dense mask over all keys."""
    N, D = query.shape[2:]
    pos = torch.arange(N, device=query.device)
    pattern = local_pattern(pos, pos, mode=mode, window=window, block_size=block_size,
                            num_global_tokens=num_global_tokens)
    return pattern_attention(query, key, value, keep, pattern, D ** -0.5 if scaling is None else scaling, causal)
