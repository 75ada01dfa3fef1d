"""Naive references: the attention patterns as dense masks over all keys. O(N^2): small N only.

These are the oracles the fast paths are tested against; they share only the sparse reductions
(pooling, norm, ...) with the fast path, which have tests of their own.
"""

from __future__ import annotations

import torch

from .local import check_local_knobs
from .lsg import check_lsg_knobs, sparse_keys, split_and_pad, uses_sparse_keys


def masked_attention(query, keys, values, allowed, scaling):
    """softmax(q k^T * scaling) v over the allowed keys; a query with no allowed key gets zeros."""
    scores = torch.einsum("bhqd,bhkd->bhqk", query, keys) * scaling
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    out = torch.einsum("bhqk,bhkd->bhqd", scores.softmax(-1), values)
    return out * allowed.any(-1, keepdim=True)


def lsg_attention_reference(query, key, value, attention_mask=None, *, block_size=128, sparse_block_size=128,
                            sparsity_factor=2, sparsity_type="norm", num_global_tokens=1, scaling=None):
    check_lsg_knobs(block_size, sparse_block_size, sparsity_factor, sparsity_type, num_global_tokens)
    B, H, N, D = query.shape
    g, b, f, s = min(num_global_tokens, N), block_size, sparsity_factor, sparse_block_size
    scaling = D ** -0.5 if scaling is None else scaling
    keep, qx, kx, vx, keep_x = split_and_pad(query, key, value, attention_mask, g, b)
    Np = qx.shape[2]
    dev = query.device

    keys = torch.cat([key[:, :, :g], kx], dim=2)        # originals: g globals, then Np tokens
    values = torch.cat([value[:, :, :g], vx], dim=2)
    keep_all = torch.cat([keep[:, :g], keep_x], dim=1)  # [B, g + Np]
    pos = torch.arange(g + Np, device=dev)
    is_global = pos < g
    block = (pos - g).div(b, rounding_mode="floor")     # block of a non-global position

    # Original keys: global queries see all; others see globals and blocks i-1..i+1.
    near = (block[:, None] - block[None, :]).abs() <= 1
    pattern = is_global[:, None] | is_global[None, :] | near           # [queries, keys]
    allowed = pattern[None, None] & keep_all[:, None, None, :]         # [B, 1, Q, K]
    allowed = allowed.expand(B, H, -1, -1)

    if uses_sparse_keys(s, sparsity_type):
        ks, vs, keep_s = sparse_keys(kx, vx, keep_x, sparsity_type=sparsity_type, sparsity_factor=f,
                                     block_size=b, sparse_block_size=s, query_first=qx[:, :, 0], scaling=scaling)
        r, M = b // f, ks.shape[2]
        j = torch.arange(M, device=dev)
        left_lo, right_lo = (block - 1) * r - s, (block + 2) * r
        in_window = ((j[None] >= left_lo[:, None]) & (j[None] < left_lo[:, None] + s)) | \
                    ((j[None] >= right_lo[:, None]) & (j[None] < right_lo[:, None] + s))
        in_window &= ~is_global[:, None]                                # [Q, M]
        sparse_allowed = in_window[None, None] & keep_s[:, :, None, :]  # [B, h, Q, M]
        keys, values = torch.cat([keys, ks], dim=2), torch.cat([values, vs], dim=2)
        allowed = torch.cat([allowed, sparse_allowed.expand(B, H, -1, -1)], dim=3)

    queries = torch.cat([query[:, :, :g], qx], dim=2)
    out = masked_attention(queries, keys, values, allowed, scaling)
    return out[:, :, :N]


def local_attention_reference(query, key, value, attention_mask=None, *, mode="sliding", window=256, block_size=256,
                              num_global_tokens=0, scaling=None):
    check_local_knobs(mode, window, block_size, num_global_tokens)
    B, H, N, D = query.shape
    g = min(num_global_tokens, N)
    scaling = D ** -0.5 if scaling is None else scaling
    keep = torch.ones(B, N, dtype=torch.bool, device=query.device) if attention_mask is None \
        else attention_mask.to(torch.bool)
    pos = torch.arange(N, device=query.device)
    is_global = pos < g
    if mode == "sliding":
        near = (pos[:, None] - pos[None, :]).abs() <= window // 2
    else:
        block = (pos - g).div(block_size, rounding_mode="floor")
        near = block[:, None] == block[None, :]
    pattern = is_global[:, None] | is_global[None, :] | near
    allowed = (pattern[None, None] & keep[:, None, None, :]).expand(B, H, N, N)
    return masked_attention(query, key, value, allowed, scaling)
