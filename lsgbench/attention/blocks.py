"""Pieces the block kernels (LSG, local, dilated) and their dense references share.

Shapes: B batch, H heads, N tokens, D head dim; g global tokens lead the sequence; `keep` [B, N]
is True for real tokens and False for padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def keep_mask(query: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """keep [B, N] as bool, all True when None."""
    B, _, N, _ = query.shape
    return torch.ones(B, N, dtype=torch.bool, device=query.device) if keep is None else keep.to(torch.bool)


def keep_with_globals(mask: torch.Tensor | None, batch: int, length: int, device) -> torch.Tensor:
    """A padding mask made before the global tokens were prepended, as keep [B, N] over the sequence
    with them (globals are never padding)."""
    if mask is None:
        return torch.ones(batch, length, dtype=torch.bool, device=device)
    keep = mask.to(torch.bool)
    return torch.cat([keep.new_ones(batch, length - keep.shape[-1]), keep], dim=-1)


def pad_to_blocks(x: torch.Tensor, block_size: int, dim: int, value=0) -> torch.Tensor:
    """Right-pad dimension `dim` to a multiple of block_size."""
    extra = -x.shape[dim] % block_size
    if not extra:
        return x
    pad = [0, 0] * (x.dim() - 1 - dim % x.dim()) + [0, extra]
    return F.pad(x, pad, value=value)


def split_and_pad(query, key, value, keep, g, block_size):
    """keep as bool, and the non-global part right-padded to whole blocks (padding is not kept)."""
    keep = keep_mask(query, keep)
    qx, kx, vx = (pad_to_blocks(t[:, :, g:], block_size, dim=2) for t in (query, key, value))
    keep_x = pad_to_blocks(keep[:, g:], block_size, dim=1, value=False)
    return keep, qx, kx, vx, keep_x


def global_query_attention(query, key, value, keep, g, scaling, dropout):
    """The g global queries attend to every non-padding key: [B, H, g, D]."""
    out = F.scaled_dot_product_attention(query[:, :, :g], key, value, attn_mask=keep[:, None, None, :],
                                         dropout_p=dropout, scale=scaling)
    return out.masked_fill(~keep.any(-1).view(-1, 1, 1, 1), 0.0)


def neighbour_blocks(x, b: int, fill):
    """[B, (H,) Np, (D)] -> [B, (H,) nb, 3b, (D)]: for block i, blocks i-1, i, i+1 (`fill` outside)."""
    dim = 2 if x.dim() == 4 else 1
    padded = F.pad(x, [0, 0] * (x.dim() - 1 - dim) + [b, b], value=fill)
    return padded.unfold(dim, 3 * b, b).movedim(-1, dim + 1)


def masked_attention(query, keys, values, allowed, scaling):
    """The dense oracle: softmax(q k^T * scaling) v over the allowed keys [B, H, Q, K]; a query with
    no allowed key gets zeros. O(Q * K): small inputs only."""
    scores = torch.einsum("bhqd,bhkd->bhqk", query, keys) * scaling
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    out = torch.einsum("bhqk,bhkd->bhqd", scores.softmax(-1), values)
    return out * allowed.any(-1, keepdim=True)


def pattern_attention(query, key, value, keep, pattern, scaling):
    """The dense oracle for a fixed pattern [N, N] (query i may see key j) under the padding mask."""
    B, H, N, _ = query.shape
    allowed = (pattern[None, None] & keep_mask(query, keep)[:, None, None, :]).expand(B, H, N, N)
    return masked_attention(query, key, value, allowed, scaling)
