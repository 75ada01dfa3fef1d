"""Dilated sliding-window attention (Beltagy et al. 2020, "Longformer", section 3.1).

Shapes: B batch, H heads, N tokens, D head dim; g global tokens lead the sequence.
- A non-global query at i, in a head of dilation d, sees the non-global keys j = i + t * d for
  t = -w, ..., w with w = window // 2: w keys on each side spaced d apart, plus itself (2w + 1 keys
  at most; fewer near the ends). Dilation 1 is local attention's sliding window.
- `dilation` holds one positive integer per head, or a single one shared by every head.
Global tokens attend to every key and every query attends to them. Padding never gets weight, and
a query with no visible key outputs zeros. Causal (decoders, blocks.py): t = -w, ..., 0 only.

The kernel splits the non-global positions of the heads sharing a dilation d into their d residue
classes mod d (positions r, r + d, r + 2d, ...). On each class the dilated window is a plain sliding
window of half-width w, so the classes are run as separate rows of local attention's sliding kernel
(each row with the global tokens in front) and the outputs are put back in place. Memory is that of
the sliding kernel, O(N * (g + 3w)) scores per head; no key is copied per query.
`dilated_attention_reference` builds the same per-head pattern as a dense mask (the oracle).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from ..errors import ConfigError
from .blocks import global_query_attention, keep_mask, pad_to_blocks, pattern_attention
from .knobs import LongKnobs
from .local import local_attention


@dataclasses.dataclass(frozen=True)
class DilatedKnobs(LongKnobs):
    name: ClassVar[str] = "dilated"
    KERNEL_CHANGED: ClassVar[str] = "20261202T033247"  # pieces of at most 2^20 scores (commit 33a54ca)
    LABELLED: ClassVar = ("window", "dilation", "num_global_tokens")
    SHORT: ClassVar = {"window": "w", "dilation": "d", "num_global_tokens": "g"}
    window: int                # total width: a query sees window // 2 keys on each side (and itself)
    dilation: tuple[int, ...]  # spacing of those keys: one per head, or one for every head

    def check(self) -> None:
        super().check()
        if self.window < 2:
            raise self.bad("window", "must be >= 2 (a query sees window // 2 keys on each side)")
        if any(d < 1 for d in self.dilation):
            raise self.bad("dilation", "must hold positive integers (1 = no gaps)")

    def add_modules(self, attention_modules: list, hidden_size: int, num_heads: int, causal: bool = False) -> None:
        head_dilations(self.dilation, num_heads)  # one value, or one per head of this model

    def _kernel_args(self) -> dict:
        return dict(window=self.window, dilation=self.dilation, num_global_tokens=self.num_global_tokens)

    def attend(self, query, key, value, keep, scaling, dropout, causal=False):
        return dilated_attention(query, key, value, keep, **self._kernel_args(), scaling=scaling, dropout=dropout,
                                 causal=causal)

    def reference(self, query, key, value, keep, scaling, causal=False):
        return dilated_attention_reference(query, key, value, keep, **self._kernel_args(), scaling=scaling,
                                           causal=causal)

    def pattern(self, queries, keys, heads):
        return dilated_pattern(queries, keys, heads, **self._kernel_args())

    def reach(self):
        return (self.window // 2) * max(self.dilation)


def head_dilations(dilation, num_heads: int) -> tuple[int, ...]:
    """The dilation of each head; the one check that needs the head count."""
    if len(dilation) == 1:
        return tuple(dilation) * num_heads
    if len(dilation) != num_heads:
        raise ConfigError(f"dilated attention: dilation={list(dilation)!r} has {len(dilation)} values, but the "
                          f"model has {num_heads} attention heads; give 1 value or {num_heads}")
    return tuple(dilation)


def dilated_attention(query, key, value, keep=None, *, window, dilation, num_global_tokens, scaling=None,
                      dropout=0.0, causal=False):
    """Dilated attention over [B, H, N, D]; keep [B, N] with 1 = token, 0 = padding (None: no padding)."""
    B, H, N, D = query.shape
    per_head = head_dilations(dilation, H)
    g = min(num_global_tokens, N)
    M = N - g
    scaling = D ** -0.5 if scaling is None else scaling
    keep = keep_mask(query, keep)                                                   # [B, N]
    outputs = [global_query_attention(query, key, value, keep, g, scaling, dropout, causal)] if g else []  # [B, H, g, D]
    if M == 0:
        return torch.cat(outputs, dim=2)

    # A dilation >= M reaches no other key: the same as M, which keeps the classes one position long.
    groups: dict[int, list[int]] = {}
    for h, d in enumerate(per_head):
        groups.setdefault(min(d, M), []).append(h)
    parts, order = [], []
    for d, heads in groups.items():
        pick = slice(None) if len(heads) == H else torch.tensor(heads, device=query.device)
        parts.append(_residue_classes_attention(query[:, pick], key[:, pick], value[:, pick], keep, g, d,
                                                window // 2, scaling, dropout, causal))  # [B, h, M, D]
        order += heads
    out = torch.cat(parts, dim=1)                                                   # [B, H, M, D], heads in `order`
    if order != list(range(H)):
        out = out[:, torch.tensor(order, device=query.device).argsort()]            # [B, H, M, D]
    return torch.cat(outputs + [out], dim=2)                                        # [B, H, N, D]


def _residue_classes_attention(query, key, value, keep, g, d, w, scaling, dropout, causal):
    """The non-global outputs [B, h, M, D] of h heads of dilation d (half-width w)."""
    B, h, N, D = query.shape
    M = N - g
    L = -(-M // d)  # positions per residue class

    def classes(x, fill):  # [B, (h,) N, (D)] -> [B * d, (h,) L, (D)]: row b * d + r holds r, r + d, ...
        dim = 2 if x.dim() == 4 else 1
        x = pad_to_blocks(x.narrow(dim, g, M), d, dim=dim, value=fill)            # [B, (h,) L * d, (D)]
        return x.unflatten(dim, (L, d)).movedim(dim + 1, 1).flatten(0, 1)

    def with_globals(x):  # [B, h, N, D] -> [B * d, h, g + L, D]
        front = x[:, None, :, :g].expand(B, d, h, g, D).flatten(0, 1)              # [B * d, h, g, D]
        return torch.cat([front, classes(x, 0.0)], dim=2)

    keep_front = keep[:, None, :g].expand(B, d, g).flatten(0, 1)                   # [B * d, g]
    keep_rows = torch.cat([keep_front, classes(keep, False)], dim=1)                # [B * d, g + L]
    # Within a class every distance is below L, so a half-width beyond L - 1 changes nothing.
    w = max(1, min(w, L - 1))
    out = local_attention(with_globals(query), with_globals(key), with_globals(value), keep_rows, mode="sliding",
                          window=2 * w, block_size=0, num_global_tokens=g, scaling=scaling,
                          dropout=dropout, causal=causal)[:, :, g:]                 # [B * d, h, L, D]
    return out.unflatten(0, (B, d)).movedim(1, 3).flatten(2, 3)[:, :, :M]         # [B, h, M, D]


def dilated_pattern(queries, keys, heads: int, *, window, dilation, num_global_tokens):
    """Which keys (positions [K]) the queries at positions [Q] see, per head: bool [H, Q, K]."""
    d = torch.tensor(head_dilations(dilation, heads), device=keys.device)[:, None, None]  # [H, 1, 1]
    gap = queries[:, None] - keys[None, :]                                            # [Q, K]: query - key
    near = (gap % d == 0) & (gap.abs() <= (window // 2) * d)                          # [H, Q, K]
    return (queries[:, None] < num_global_tokens) | (keys[None, :] < num_global_tokens) | near


def dilated_attention_reference(query, key, value, keep=None, *, window, dilation, num_global_tokens,
                                scaling=None, causal=False):
    """The same pattern as a dense per-head mask over all keys."""
    B, H, N, D = query.shape
    pos = torch.arange(N, device=query.device)
    pattern = dilated_pattern(pos, pos, H, window=window, dilation=dilation, num_global_tokens=num_global_tokens)
    return pattern_attention(query, key, value, keep, pattern, D ** -0.5 if scaling is None else scaling, causal)
