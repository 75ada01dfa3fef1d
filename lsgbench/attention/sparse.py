"""The sparse sequence of LSG attention (lsg.py): reductions of the block-padded keys by sparsity_factor,
shared by the block kernel, its reference and the FlexAttention kernel (flex.py)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LSH_SEED = 0  # lsh projections are fixed random draws, the same on every call and device


# Reductions that depend on a head's keys alone, so query heads sharing a K/V head (grouped-query attention) share
# them too: made once per K/V head. The others (stride offsets, lsh projections and bos_pooling's query weights
# differ by query head) need the K/V heads repeated to every query head.
ON_KV_HEADS = ("none", "pooling", "norm")


def uses_sparse_keys(sparse_block_size: int, sparsity_type: str) -> bool:
    return sparsity_type != "none" and sparse_block_size > 0


# ------------------------------------------------------------------ sparse reductions
# Each takes the padded non-global keys/values kx, vx [B, H, Np, D] and keep [B, Np] (bool) and
# returns sparse keys, values [B, H, M, D] and their keep mask [B, 1 or H, M], M = Np / f.
# Scores that choose tokens (norms, LSH projections, bos_pooling weights) are computed in at least
# float32: in bf16, nearby key norms tie and LSH codes flip, which changes what is selected.

def _selection_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def _pooling(kx, vx, keep, f, **_):
    B, H, Np, D = kx.shape
    count = keep.view(B, 1, Np // f, 1, f).sum(-1, keepdim=True)                      # [B, 1, M, 1, 1]
    w = keep.view(B, 1, Np // f, 1, f).to(kx.dtype) / count.clamp(min=1)             # mean over the real tokens
    # [1 x f] @ [f x D] per group: no copy of the keys the size of the input (a masked product would be one)
    ks, vs = ((w @ x.view(B, H, Np // f, f, D)).squeeze(-2) for x in (kx, vx))
    return ks, vs, count[:, :, :, 0, 0] > 0


def _gather_tokens(kx, vx, keep, index):
    """Per-head token selection: index [1 or B, H, M] of positions in Np."""
    B, H, Np, D = kx.shape
    index = index.expand(B, H, -1)
    ks = kx.gather(2, index.unsqueeze(-1).expand(-1, -1, -1, D))
    vs = vx.gather(2, index.unsqueeze(-1).expand(-1, -1, -1, D))
    return ks, vs, keep.unsqueeze(1).expand(B, H, Np).gather(2, index)


def _stride(kx, vx, keep, f, **_):
    H, Np = kx.shape[1], kx.shape[2]
    offset = torch.arange(H, device=kx.device) % f
    index = torch.arange(0, Np, f, device=kx.device)[None, :] + offset[:, None]  # [H, M]
    return _gather_tokens(kx, vx, keep, index.unsqueeze(0))


def _block_stride(kx, vx, keep, f, block_size, **_):
    H, Np = kx.shape[1], kx.shape[2]
    r = block_size // f
    offset = (torch.arange(H, device=kx.device) % f) * r
    starts = torch.arange(0, Np, block_size, device=kx.device)  # one slice of r tokens per block
    within = torch.arange(r, device=kx.device)
    index = (starts[None, :, None] + offset[:, None, None] + within[None, None, :]).reshape(H, -1)
    return _gather_tokens(kx, vx, keep, index.unsqueeze(0))


def _norm(kx, vx, keep, f, block_size, sparse_block_size, **_):
    B, H, Np, D = kx.shape
    c = min(block_size, sparse_block_size)
    norms = kx.to(_selection_dtype(kx)).norm(dim=-1).masked_fill(~keep.unsqueeze(1), -math.inf).view(B, H, Np // c, c)
    top = norms.topk(c // f, dim=-1).indices.sort(dim=-1).values  # keep positional order within a chunk
    index = (top + torch.arange(0, Np, c, device=kx.device).view(1, 1, -1, 1)).reshape(B, H, -1)
    return _gather_tokens(kx, vx, keep, index)


def _lsh(kx, vx, keep, f, block_size, sparse_block_size, **_):
    B, H, Np, D = kx.shape
    c = min(block_size, sparse_block_size)
    buckets = c // f
    gen = torch.Generator().manual_seed(LSH_SEED)
    dtype = _selection_dtype(kx)
    planes = torch.randn(H, D, buckets, generator=gen).to(device=kx.device, dtype=dtype)
    code = torch.einsum("bhnd,hdk->bhnk", kx.to(dtype), planes).argmax(-1)  # bucket of each key
    onehot = F.one_hot(code, buckets).to(kx.dtype) * keep.view(B, 1, Np, 1).to(kx.dtype)
    onehot = onehot.view(B, H, Np // c, c, buckets)
    count = onehot.sum(-2)  # [B, H, chunks, buckets]
    ks = torch.einsum("bhcnk,bhcnd->bhckd", onehot, kx.view(B, H, Np // c, c, D)) / count.clamp(min=1).unsqueeze(-1)
    vs = torch.einsum("bhcnk,bhcnd->bhckd", onehot, vx.view(B, H, Np // c, c, D)) / count.clamp(min=1).unsqueeze(-1)
    return ks.reshape(B, H, -1, D), vs.reshape(B, H, -1, D), (count > 0).reshape(B, H, -1)


def _bos_pooling(kx, vx, keep, f, query_first, scaling, **_):
    """Each group of f keys pooled with softmax weights from the query of the first non-global token
    (as ccdv's code does, also when that token is padding: the weights still exclude padded keys)."""
    B, H, Np, D = kx.shape
    dtype = _selection_dtype(kx)
    scores = torch.einsum("bhd,bhnd->bhn", query_first.to(dtype), kx.to(dtype)) * scaling
    scores = scores.masked_fill(~keep.unsqueeze(1), -math.inf).view(B, H, Np // f, f)
    any_kept = keep.view(B, 1, Np // f, f).any(-1)
    w = scores.softmax(-1).nan_to_num(0.0).unsqueeze(-1).to(kx.dtype)  # an all-padding group has no weights
    ks = (kx.view(B, H, Np // f, f, D) * w).sum(-2)
    vs = (vx.view(B, H, Np // f, f, D) * w).sum(-2)
    return ks, vs, any_kept


SPARSE_REDUCTIONS = {"pooling": _pooling, "stride": _stride, "block_stride": _block_stride, "norm": _norm,
                     "lsh": _lsh, "bos_pooling": _bos_pooling}


def sparse_keys(kx, vx, keep, *, sparsity_type, sparsity_factor, block_size, sparse_block_size, query_first, scaling):
    """The sparse sequence of one LSG layer (see the module docstring). With f = 1 every token is kept."""
    if sparsity_factor == 1:
        return kx, vx, keep.unsqueeze(1)
    return SPARSE_REDUCTIONS[sparsity_type](kx, vx, keep, f=sparsity_factor, block_size=block_size,
                                            sparse_block_size=sparse_block_size, query_first=query_first,
                                            scaling=scaling)
