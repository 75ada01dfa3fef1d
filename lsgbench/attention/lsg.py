"""LSG attention (Condevaux & Harispe 2023): Local + Sparse + Global keys per block of queries.

Shapes: B batch, H heads, N tokens, D head dim; g global tokens lead the sequence, the other
n = N - g tokens are right-padded to Np = nb * b (nb blocks of b = block_size). The sparse
sequence reduces those Np keys by f = sparsity_factor to M = Np / f tokens; r = b / f of them
stand for each block. A query in block i sees
    g global keys | local keys of blocks i-1, i, i+1 (3b) | sparse [(i-1)r - s, (i-1)r) and
    [(i+2)r, (i+2)r + s) (2s, s = sparse_block_size)
so memory is O(N * (g + 3b + 2s)), linear in N. Global queries see every key.
`lsg_attention_reference` in reference.py builds the same pattern as a dense mask (the oracle).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import ConfigError

SPARSITY_TYPES = ("none", "norm", "pooling", "lsh", "stride", "block_stride", "bos_pooling")
LSH_SEED = 0  # lsh projections are fixed random draws, the same on every call and device


def check_lsg_knobs(block_size, sparse_block_size, sparsity_factor, sparsity_type, num_global_tokens):
    prefix = "model.attention."
    if sparsity_type not in SPARSITY_TYPES:
        raise ConfigError(f"{prefix}sparsity_type={sparsity_type!r} is unknown; choose one of {list(SPARSITY_TYPES)}")
    if block_size < 1:
        raise ConfigError(f"{prefix}block_size={block_size} must be >= 1")
    if sparse_block_size < 0 or sparsity_factor < 1 or num_global_tokens < 0:
        raise ConfigError(f"{prefix}sparse_block_size={sparse_block_size}, sparsity_factor={sparsity_factor} and "
                          f"num_global_tokens={num_global_tokens} must be >= 0, >= 1 and >= 0")
    if block_size % sparsity_factor:
        raise ConfigError(f"{prefix}block_size={block_size} must be divisible by sparsity_factor={sparsity_factor}")
    if sparsity_type in ("norm", "lsh") and sparse_block_size:
        chunk = min(block_size, sparse_block_size)
        if block_size % chunk or chunk % sparsity_factor:
            raise ConfigError(f"{prefix}sparsity_type={sparsity_type!r} works on chunks of min(block_size, "
                              f"sparse_block_size)={chunk} tokens, which must divide block_size={block_size} and be "
                              f"divisible by sparsity_factor={sparsity_factor}")


def uses_sparse_keys(sparse_block_size: int, sparsity_type: str) -> bool:
    return sparsity_type != "none" and sparse_block_size > 0


def pad_to_blocks(x: torch.Tensor, block_size: int, dim: int, value=0) -> torch.Tensor:
    """Right-pad dimension `dim` to a multiple of block_size."""
    extra = -x.shape[dim] % block_size
    if not extra:
        return x
    pad = [0, 0] * (x.dim() - 1 - dim % x.dim()) + [0, extra]
    return F.pad(x, pad, value=value)


# ------------------------------------------------------------------ sparse reductions
# Each takes the padded non-global keys/values kx, vx [B, H, Np, D] and keep [B, Np] (bool) and
# returns sparse keys, values [B, H, M, D] and their keep mask [B, 1 or H, M], M = Np / f.

def _pooling(kx, vx, keep, f, **_):
    B, H, Np, D = kx.shape
    w = keep.view(B, 1, Np // f, f, 1).to(kx.dtype)
    count = w.sum(-2)
    ks = (kx.view(B, H, Np // f, f, D) * w).sum(-2) / count.clamp(min=1)
    vs = (vx.view(B, H, Np // f, f, D) * w).sum(-2) / count.clamp(min=1)
    return ks, vs, count[..., 0] > 0


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
    norms = kx.norm(dim=-1).masked_fill(~keep.unsqueeze(1), -math.inf).view(B, H, Np // c, c)
    top = norms.topk(c // f, dim=-1).indices.sort(dim=-1).values  # keep positional order within a chunk
    index = (top + torch.arange(0, Np, c, device=kx.device).view(1, 1, -1, 1)).reshape(B, H, -1)
    return _gather_tokens(kx, vx, keep, index)


def _lsh(kx, vx, keep, f, block_size, sparse_block_size, **_):
    B, H, Np, D = kx.shape
    c = min(block_size, sparse_block_size)
    buckets = c // f
    gen = torch.Generator().manual_seed(LSH_SEED)
    planes = torch.randn(H, D, buckets, generator=gen).to(device=kx.device, dtype=kx.dtype)
    code = torch.einsum("bhnd,hdk->bhnk", kx, planes).argmax(-1)  # bucket of each key
    onehot = F.one_hot(code, buckets).to(kx.dtype) * keep.view(B, 1, Np, 1).to(kx.dtype)
    onehot = onehot.view(B, H, Np // c, c, buckets)
    count = onehot.sum(-2)  # [B, H, chunks, buckets]
    ks = torch.einsum("bhcnk,bhcnd->bhckd", onehot, kx.view(B, H, Np // c, c, D)) / count.clamp(min=1).unsqueeze(-1)
    vs = torch.einsum("bhcnk,bhcnd->bhckd", onehot, vx.view(B, H, Np // c, c, D)) / count.clamp(min=1).unsqueeze(-1)
    return ks.reshape(B, H, -1, D), vs.reshape(B, H, -1, D), (count > 0).reshape(B, H, -1)


def _bos_pooling(kx, vx, keep, f, query_first, scaling, **_):
    B, H, Np, D = kx.shape
    scores = torch.einsum("bhd,bhnd->bhn", query_first, kx) * scaling
    scores = scores.masked_fill(~keep.unsqueeze(1), -math.inf).view(B, H, Np // f, f)
    any_kept = keep.view(B, 1, Np // f, f).any(-1)
    w = scores.softmax(-1).nan_to_num(0.0).unsqueeze(-1)  # an all-padding group has no weights
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


def split_and_pad(query, key, value, attention_mask, g, block_size):
    """Global part, and the non-global part right-padded to whole blocks (padding is not kept)."""
    B, H, N, D = query.shape
    keep = torch.ones(B, N, dtype=torch.bool, device=query.device) if attention_mask is None \
        else attention_mask.to(torch.bool)
    qx, kx, vx = (pad_to_blocks(t[:, :, g:], block_size, dim=2) for t in (query, key, value))
    keep_x = pad_to_blocks(keep[:, g:], block_size, dim=1, value=False)
    return keep, qx, kx, vx, keep_x


# ------------------------------------------------------------------ the fast path

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


def lsg_attention(query, key, value, attention_mask=None, *, block_size=128, sparse_block_size=128,
                  sparsity_factor=2, sparsity_type="norm", num_global_tokens=1, scaling=None, dropout=0.0):
    """LSG attention over [B, H, N, D]; attention_mask [B, N] with 1 = keep, 0 = padding.
    `dropout` drops attention probabilities (training only; the reference has none)."""
    check_lsg_knobs(block_size, sparse_block_size, sparsity_factor, sparsity_type, num_global_tokens)
    B, H, N, D = query.shape
    g, b, f, s = min(num_global_tokens, N), block_size, sparsity_factor, sparse_block_size
    scaling = D ** -0.5 if scaling is None else scaling
    keep, qx, kx, vx, keep_x = split_and_pad(query, key, value, attention_mask, g, b)
    Np = qx.shape[2]
    nb = Np // b

    outputs = [global_query_attention(query, key, value, keep, g, scaling, dropout)] if g else []
    if Np == 0:
        return torch.cat(outputs, dim=2)

    # Local keys: blocks i-1, i, i+1 of the padded sequence.
    keys = [neighbour_blocks(kx, b, 0.0)]                    # [B, H, nb, 3b, D]
    values = [neighbour_blocks(vx, b, 0.0)]
    masks = [neighbour_blocks(keep_x, b, False).unsqueeze(1)]  # [B, 1, nb, 3b]

    if g:  # global keys, shared by every block
        keys.insert(0, key[:, :, None, :g].expand(B, H, nb, g, D))
        values.insert(0, value[:, :, None, :g].expand(B, H, nb, g, D))
        masks.insert(0, keep[:, None, None, :g].expand(B, 1, nb, g))

    if uses_sparse_keys(s, sparsity_type):
        ks, vs, keep_s = sparse_keys(kx, vx, keep_x, sparsity_type=sparsity_type, sparsity_factor=f, block_size=b,
                                     sparse_block_size=s, query_first=qx[:, :, 0], scaling=scaling)
        r = b // f
        # Pad the sparse sequence by r + s on both sides; then block i's left window starts at i*r
        # and its right window at (i + 3) * r + s.
        def windows(x, fill):  # [B, h, M, *] -> [B, h, nb, 2s, *]
            padded = F.pad(x, [0, 0] * (x.dim() - 3) + [r + s, r + s], value=fill)
            left = padded.unfold(2, s, r)[:, :, :nb]
            right = padded[:, :, 3 * r + s:].unfold(2, s, r)[:, :, :nb]
            return torch.cat([left, right], dim=-1).movedim(-1, 3)

        keys.append(windows(ks, 0.0))
        values.append(windows(vs, 0.0))
        masks.append(windows(keep_s, False))

    keys, values = torch.cat(keys, dim=3), torch.cat(values, dim=3)       # [B, H, nb, K, D]
    mask = torch.cat([m.expand(B, H, nb, -1) for m in masks], dim=3)       # [B, H, nb, K]
    K = keys.shape[3]
    q_blocks = qx.reshape(B, H * nb, b, D)
    out = F.scaled_dot_product_attention(q_blocks, keys.reshape(B, H * nb, K, D), values.reshape(B, H * nb, K, D),
                                         attn_mask=mask.reshape(B, H * nb, 1, K), dropout_p=dropout,
                                         scale=scaling)
    out = out.masked_fill(~mask.any(-1).reshape(B, H * nb, 1, 1), 0.0)
    outputs.append(out.reshape(B, H, Np, D)[:, :, : N - g])
    return torch.cat(outputs, dim=2)
