"""LSG attention (Condevaux & Harispe 2023): Local + Sparse + Global keys per block of queries.

Shapes: B batch, H heads, N tokens, D head dim; g global tokens lead the sequence, the other
n = N - g tokens are right-padded to Np = nb * b (nb blocks of b = block_size). The sparse
sequence reduces those Np keys by f = sparsity_factor to M = Np / f tokens; r = b / f of them
stand for each block. A query in block i sees
    g global keys | local keys of blocks i-1, i, i+1 (3b) | sparse [(i-1)r - s, (i-1)r) and
    [(i+2)r, (i+2)r + s) (2s, s = sparse_block_size)
so memory is O(N * (g + 3b + 2s)), linear in N. Global queries see every key.
Causal (decoders, blocks.py): block i sees blocks i-1 and i up to the query, the left sparse window only
(sparse keys made from blocks that end before block i-1 starts) and the globals, which see each other causally.
`lsg_attention_reference` builds the same pattern as a dense mask (the oracle).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F

from .blocks import (Derived, Piece, attend_pieces, block_pieces, clip, fit, global_query_pieces, keep_mask, masked_attention,
                     neighbour_blocks, pad_to_blocks, split_and_pad)
from .knobs import LongKnobs, check_backend, runs_flex, with_backend
from .sparse import LSH_SEED, SPARSE_REDUCTIONS, sparse_keys, uses_sparse_keys  # noqa: F401  (re-exported)

SPARSITY_TYPES = ("none", "norm", "pooling", "lsh", "stride", "block_stride", "bos_pooling")


@dataclasses.dataclass(frozen=True)
class LsgKnobs(LongKnobs):
    name: ClassVar[str] = "lsg"
    KERNEL_CHANGED: ClassVar[str] = "20261202T045553"  # sparse keys made piece by piece (commit 17bc731)
    LABELLED: ClassVar = ("block_size", "sparse_block_size", "sparsity_factor", "sparsity_type", "num_global_tokens")
    SHORT: ClassVar = {"block_size": "b", "sparse_block_size": "s", "sparsity_factor": "f", "num_global_tokens": "g"}
    block_size: int         # b: a query sees its block and the two beside it (3b keys)
    sparse_block_size: int  # s: sparse keys on each side of the local window (2s keys)
    sparsity_factor: int    # f: the sparse sequence is N / f long
    sparsity_type: str      # how the sparse sequence is made: SPARSITY_TYPES
    backend: str            # auto | blocks | flex (knobs.BACKENDS)

    @classmethod
    def labelled(cls, attention: Mapping) -> tuple[str, ...]:
        return with_backend(cls.LABELLED, attention)

    def check(self) -> None:
        super().check()
        check_backend(self)
        if self.sparsity_type not in SPARSITY_TYPES:
            raise self.bad("sparsity_type", f"is unknown; choose one of {list(SPARSITY_TYPES)}")
        self.check_at_least(block_size=1, sparse_block_size=0, sparsity_factor=1)
        if self.block_size % self.sparsity_factor:
            raise self.bad("block_size", f"must be divisible by sparsity_factor={self.sparsity_factor}")
        if self.sparsity_type in ("norm", "lsh") and self.sparse_block_size:
            chunk = min(self.block_size, self.sparse_block_size)
            if self.block_size % chunk or chunk % self.sparsity_factor:
                raise self.bad("sparsity_type", f"works on chunks of min(block_size, sparse_block_size)={chunk} "
                               f"tokens, which must divide block_size={self.block_size} and be divisible by "
                               f"sparsity_factor={self.sparsity_factor}")

    def full_attention_at(self, length: int) -> bool:
        return length <= 2 * self.block_size  # at most two blocks: each sees both

    def _kernel_args(self) -> dict:
        return dict(block_size=self.block_size, sparse_block_size=self.sparse_block_size,
                    sparsity_factor=self.sparsity_factor, sparsity_type=self.sparsity_type,
                    num_global_tokens=self.num_global_tokens)

    def grouped_kv(self, query, dropout):
        return runs_flex(self, query, dropout)  # FlexAttention's enable_gqa

    def attend(self, query, key, value, keep, scaling, dropout, causal=False):
        if runs_flex(self, query, dropout):
            from .flex import lsg_attention_flex
            return lsg_attention_flex(query, key, value, keep, **self._kernel_args(), scaling=scaling, causal=causal)
        return lsg_attention(query, key, value, keep, **self._kernel_args(), scaling=scaling, dropout=dropout,
                             causal=causal)

    def reference(self, query, key, value, keep, scaling, causal=False):
        return lsg_attention_reference(query, key, value, keep, **self._kernel_args(), scaling=scaling, causal=causal)

    def pattern(self, queries, keys, heads):
        return lsg_token_pattern(queries, keys, block_size=self.block_size,
                                 num_global_tokens=self.num_global_tokens)[None]

    def _sparse_blocks_back(self) -> int:
        """How many blocks before a query block's previous one its sparse keys come from: every sparse key is made
        from the tokens of one block (r = b / f per block), and the left window holds s of them."""
        if not uses_sparse_keys(self.sparse_block_size, self.sparsity_type):
            return 0
        return -(-self.sparse_block_size // (self.block_size // self.sparsity_factor))

    def reach(self):
        if self.sparsity_type == "bos_pooling":  # the first token's query weighs every sparse key
            return None
        return (2 + self._sparse_blocks_back()) * self.block_size - 1

    def earliest_key(self, position):
        """The first token of the earliest block a causal query at `position` takes keys from (whole blocks, so the
        sparse keys made from them are the kernel's)."""
        g, b = self.num_global_tokens, self.block_size
        return g + ((position - g) // b - 1 - self._sparse_blocks_back()) * b

    def attend_cached(self, query, key, value, keep, scaling, start):
        """The local and global keys as every variant's; then the left window of sparse keys, made from the cached
        blocks within reach as the kernel makes them from the whole sequence."""
        if not uses_sparse_keys(self.sparse_block_size, self.sparsity_type):
            return super().attend_cached(query, key, value, keep, scaling, start)
        if self.sparsity_type == "bos_pooling":
            raise NotImplementedError("lsg attention with sparsity_type=bos_pooling cannot generate with a KV cache: "
                                      "its pooling weights come from the first token's query, which the cache does "
                                      "not keep")
        (B, H, Q, D), b = query.shape, self.block_size
        scaling = D ** -0.5 if scaling is None else scaling
        g = min(self.num_global_tokens, key.shape[2])  # the globals lead the cache
        key, value, keep, positions, lo = self.visible_cache(query, key, value, keep, start)
        kx, vx = (pad_to_blocks(t[:, :, g:], b, dim=2) for t in (key, value))
        ks, vs, keep_s = sparse_keys(kx, vx, pad_to_blocks(keep[:, g:], b, dim=1, value=False),
                                     sparsity_type=self.sparsity_type, sparsity_factor=self.sparsity_factor,
                                     block_size=b, sparse_block_size=self.sparse_block_size, scaling=scaling,
                                     query_first=None)
        first = (lo - self.num_global_tokens) // self.sparsity_factor  # lo starts a block: its first sparse key
        window = lsg_sparse_pattern(positions[-Q:], torch.arange(first, first + ks.shape[2], device=key.device),
                                    block_size=b, sparse_block_size=self.sparse_block_size,
                                    sparsity_factor=self.sparsity_factor, num_global_tokens=self.num_global_tokens,
                                    causal=True)                                                    # [Q, M]
        allowed = torch.cat([self.cached_pattern(query, positions, keep).expand(B, H, Q, -1),
                             (window[None, None] & keep_s[:, :, None, :]).expand(B, H, Q, -1)], dim=3)
        return masked_attention(query, torch.cat([key, ks], dim=2), torch.cat([value, vs], dim=2), allowed, scaling)



# ------------------------------------------------------------------ the fast path

def lsg_attention(query, key, value, keep=None, *, block_size, sparse_block_size, sparsity_factor, sparsity_type,
                  num_global_tokens, scaling=None, dropout=0.0, causal=False):
    """LSG attention over [B, H, N, D]; keep [B, N] with 1 = token, 0 = padding (None: no padding).
    `dropout` drops attention probabilities (training only; the reference has none).
    Runs as pieces of a few blocks (blocks.attend_pieces): the gathered keys of one piece exist at a
    time, and backward regathers them instead of keeping them."""
    B, H, N, D = query.shape
    g, b, f, s = min(num_global_tokens, N), block_size, sparsity_factor, sparse_block_size
    scaling = D ** -0.5 if scaling is None else scaling
    keep = keep_mask(query, keep)
    n = N - g
    nb = -(-n // b)
    Np = nb * b
    inputs, pieces = [query, key, value], global_query_pieces(B, N, keep, g, scaling, dropout, causal)
    if n == 0:
        return attend_pieces(inputs, pieces, N, dropout=dropout > 0)

    width = 2 * b if causal else 3 * b                                          # local keys: blocks i-1, i (, i+1)
    keep_x = pad_to_blocks(keep[:, g:], b, dim=1, value=False)                   # [B, Np]
    local_keep = neighbour_blocks(keep_x, b, False)[..., :width]                # [B, nb, width]
    sparse = uses_sparse_keys(s, sparsity_type)
    derived = None
    if sparse:  # made piece by piece inside attend_pieces, so backward adds their gradients into K and V in place
        r, M = b // f, Np // f

        def sparse_piece(r0, r1, i0, i1):  # the sparse sequence of blocks i0..i1 is made from those blocks alone
            lo, hi = g + i0 * b, g + i1 * b

            def make(k_tokens, v_tokens, q_first=None):
                return sparse_keys(fit(k_tokens, lo, hi, g, N), fit(v_tokens, lo, hi, g, N),
                                   keep_x[r0:r1, i0 * b:i1 * b], sparsity_type=sparsity_type, sparsity_factor=f,
                                   block_size=b, sparse_block_size=s, scaling=scaling,
                                   query_first=None if q_first is None else q_first[:, :, 0])

            tokens = clip(lo, hi, g, N)
            first_query = ((0, g, g + 1),) if sparsity_type == "bos_pooling" else ()  # its pooling weights
            return Piece((r0, r1), (i0 * r, i1 * r), ((1, *tokens), (2, *tokens), *first_query), make)

        derived = Derived(tuple(sparse_piece(*rows, *blocks)  # inputs 3, 4, 5: ks, vs, keep_s
                                for rows, blocks in block_pieces(B, nb, H * b * D, query.device)), M)

        # Pad the sparse sequence by r + s on both sides; then block i's left window starts at i*r
        # and its right window at (i + 3) * r + s. A piece of blocks i0..i1 reads padded positions
        # [i0 r, (i1 + 2) r + 2s), i.e. [i0 r - r - s, (i1 + 1) r + s) of the sparse sequence.
        def windows(x, nbc):  # the padded span of a piece [B, h, (nbc + 2) r + 2s, *] -> [B, h, nbc, 2s (s), *]
            left = x.unfold(2, s, r)[:, :, :nbc]
            if causal:
                return left.movedim(-1, 3)
            right = x[:, :, 3 * r + s:].unfold(2, s, r)[:, :, :nbc]
            return torch.cat([left, right], dim=-1).movedim(-1, 3)

    K = g + width + ((1 if causal else 2) * s if sparse else 0)
    # causal: query q of a block sees the local keys up to itself (key k of blocks i-1, i is at q's block start - b + k)
    before = torch.arange(width, device=query.device)[None, :] <= torch.arange(b, device=query.device)[:, None] + b
    causal_band = F.pad(before, [g, K - g - width], value=True)                # [b, K]

    def piece(r0, r1, i0, i1):
        nbc, Bc = i1 - i0, r1 - r0
        lo, hi = g + i0 * b, g + i1 * b                   # this piece's queries
        around = (lo - b, hi + (0 if causal else b))       # their local keys
        span = (i0 * r - r - s, (i1 + 1) * r + s) if sparse else None

        def attend(q, k_glob, v_glob, k_loc, v_loc, k_sp=None, v_sp=None, keep_sp=None):
            q = fit(q, lo, hi, g, N)
            keys = [fit(k_loc, *around, g, N).unfold(2, width, b).movedim(-1, 3)]  # [Bc, H, nbc, width, D]
            values = [fit(v_loc, *around, g, N).unfold(2, width, b).movedim(-1, 3)]
            masks = [local_keep[r0:r1, None, i0:i1]]                                  # [Bc, 1, nbc, 3b]
            if g:  # global keys, shared by every block
                keys.insert(0, k_glob[:, :, None].expand(Bc, H, nbc, g, D))
                values.insert(0, v_glob[:, :, None].expand(Bc, H, nbc, g, D))
                masks.insert(0, keep[r0:r1, None, None, :g].expand(Bc, 1, nbc, g))
            if sparse:
                keys.append(windows(fit(k_sp, *span, 0, M), nbc))
                values.append(windows(fit(v_sp, *span, 0, M), nbc))
                masks.append(windows(fit(keep_sp, *span, 0, M, fill=False), nbc))
            keys, values = torch.cat(keys, dim=3), torch.cat(values, dim=3)        # [Bc, H, nbc, K, D]
            mask = torch.cat([m.expand(Bc, H, nbc, -1) for m in masks], dim=3)     # [Bc, H, nbc, K]
            mask = (mask[:, :, :, None] & causal_band) if causal else mask[:, :, :, None]  # [Bc, H, nbc, b or 1, K]
            mask = mask.reshape(Bc, H * nbc, -1, K)
            out = F.scaled_dot_product_attention(q.reshape(Bc, H * nbc, b, D), keys.reshape(Bc, H * nbc, K, D),
                                                 values.reshape(Bc, H * nbc, K, D), attn_mask=mask,
                                                 dropout_p=dropout, scale=scaling)
            out = out.masked_fill(~mask.any(-1, keepdim=True), 0.0)
            return out.reshape(Bc, H, nbc * b, D)[:, :, : min(hi, N) - lo]

        local = clip(*around, g, N)
        wins = ((0, *clip(lo, hi, g, N)), (1, 0, g), (2, 0, g), (1, *local), (2, *local))
        if sparse:
            wins += tuple((i, *clip(*span, 0, M)) for i in (3, 4, 5))
        return Piece((r0, r1), (lo, min(hi, N)), wins, attend)

    pieces += [piece(r0, r1, i0, i1) for (r0, r1), (i0, i1) in block_pieces(B, nb, H * b * K, query.device)]
    return attend_pieces(inputs, pieces, N, derived=derived, dropout=dropout > 0)


# ------------------------------------------------------------------ the oracle

def lsg_token_pattern(queries, keys, *, block_size, num_global_tokens):
    """Which original keys (positions [K]) the queries at positions [Q] see: global queries every key, the others
    the globals and the tokens of blocks i-1..i+1. bool [Q, K]."""
    g, q, k = num_global_tokens, queries[:, None], keys[None, :]
    block = lambda x: (x - g).div(block_size, rounding_mode="floor")  # noqa: E731  block of a non-global position
    return (q < g) | (k < g) | ((block(q) - block(k)).abs() <= 1)


def lsg_sparse_pattern(queries, sparse, *, block_size, sparse_block_size, sparsity_factor, num_global_tokens, causal):
    """Which of the sparse keys at indices `sparse` [M] of the sparse sequence the queries at positions [Q] see: block
    i's windows [(i-1)r - s, (i-1)r) and [(i+2)r, (i+2)r + s) (causal: the left one, made from earlier blocks alone),
    none for global queries. bool [Q, M]."""
    g, r, s = num_global_tokens, block_size // sparsity_factor, sparse_block_size
    j = sparse[None]
    block = (queries - g).div(block_size, rounding_mode="floor")[:, None]
    left, right = (block - 1) * r - s, (block + 2) * r
    seen = (j >= left) & (j < left + s)
    if not causal:  # the right window holds keys of later blocks
        seen |= (j >= right) & (j < right + s)
    return seen & (queries[:, None] >= g)


def lsg_attention_reference(query, key, value, keep=None, *, block_size, sparse_block_size, sparsity_factor,
                            sparsity_type, num_global_tokens, scaling=None, causal=False):
    """The same pattern as a dense mask over all keys (shares only the sparse reductions, which have
    tests of their own)."""
    B, H, N, D = query.shape
    g, b, f, s = min(num_global_tokens, N), block_size, sparsity_factor, sparse_block_size
    scaling = D ** -0.5 if scaling is None else scaling
    keep, qx, kx, vx, keep_x = split_and_pad(query, key, value, keep, g, b)
    Np = qx.shape[2]
    dev = query.device

    keys = torch.cat([key[:, :, :g], kx], dim=2)        # originals: g globals, then Np tokens
    values = torch.cat([value[:, :, :g], vx], dim=2)
    keep_all = torch.cat([keep[:, :g], keep_x], dim=1)  # [B, g + Np]
    pos = torch.arange(g + Np, device=dev)

    pattern = lsg_token_pattern(pos, pos, block_size=b, num_global_tokens=g)   # [queries, keys]
    if causal:
        pattern &= pos[None, :] <= pos[:, None]
    allowed = (pattern[None, None] & keep_all[:, None, None, :]).expand(B, H, -1, -1)

    if uses_sparse_keys(s, sparsity_type):
        ks, vs, keep_s = sparse_keys(kx, vx, keep_x, sparsity_type=sparsity_type, sparsity_factor=f,
                                     block_size=b, sparse_block_size=s, query_first=qx[:, :, 0], scaling=scaling)
        in_window = lsg_sparse_pattern(pos, torch.arange(ks.shape[2], device=dev), block_size=b, sparse_block_size=s,
                                       sparsity_factor=f, num_global_tokens=g, causal=causal)     # [Q, M]
        sparse_allowed = in_window[None, None] & keep_s[:, :, None, :]  # [B, h, Q, M]
        keys, values = torch.cat([keys, ks], dim=2), torch.cat([values, vs], dim=2)
        allowed = torch.cat([allowed, sparse_allowed.expand(B, H, -1, -1)], dim=3)

    queries = torch.cat([query[:, :, :g], qx], dim=2)
    return masked_attention(queries, keys, values, allowed, scaling)[:, :, :N]
