"""FlexAttention (torch.nn.attention.flex_attention) versions of the LSG and local kernels: a GPU fast path.

The non-global queries run as one flex_attention call over the keys [global (g) | tokens (N - g) | sparse (M)]
(sparse keys: LSG only, made by sparse.sparse_keys from the block-padded keys). What a query may see is said twice:
- a mask_mod, exact for every (query, key) pair, pattern and padding (it reads a captured keep tensor);
- a BlockMask over tiles of TILE queries x TILE keys, built from the known layout (never by evaluating the mask
  over all pairs): the kv tiles each query tile touches, and those it sees whole. Flex skips the other tiles and
  applies no mask_mod on whole ones. The layout ignores padding and is cached per (knobs, length, device); each
  call only turns whole tiles that hold a padded key into partial ones (a few small ops on [B, tiles, tiles]).
So the BlockMask is only an optimisation: eager flex (which ignores it and masks with mask_mod alone) and
compiled flex give the same outputs. The g global queries see every key, as in the block kernels (blocks.py).
Causal (decoders): the mask_mod adds key <= query (for sparse keys: the left window only). The layouts leave
a query block's own block partial (LSG, disjoint): correct, if a few tiles below the diagonal run mask_mod.

Memory: O(N) for the attention (compiled flex), plus O(B (N / TILE)^2) small ints for the block tables.
No dropout. Backward needs CUDA: on CPU flex refuses inputs that require grad (eager or compiled); it has a
compiled CPU forward (seconds to compile per shape and knobs).
"""

from __future__ import annotations

import functools
import inspect

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from .blocks import global_query_attention, keep_mask, pad_to_blocks
from .sparse import sparse_keys, uses_sparse_keys

TILE = 128      # BlockMask tiles (queries and keys): the Triton kernels' tiles must divide it
COMPILE = True  # False: eager flex_attention, which materialises all scores (CPU tests only)
RECOMPILE_LIMIT = 64  # compiles per process (a few per knobs: first shapes, then dynamic ones; grad mode)
calls = 0       # flex_attention calls made so far (the benchmark counts the FLOPs of steps that made any on blocks)


@functools.cache
def compiled_flex(cuda: bool):
    """torch.compile(flex_attention), made on first use. The tensors mask_mod captures (keep) and the block
    tables are graph inputs: new data does not recompile. On CUDA the first call compiles for its shapes and
    knobs (static); when a shape or a captured int changes, dynamo recompiles once with it dynamic, so batches
    of other lengths or sizes reuse that kernel. On CPU (forward only) every shape compiles static: torch
    2.13's CPU flex fails to build some dynamic-shape kernels. Recompiles are counted apart from other
    compiled code, and past RECOMPILE_LIMIT fullgraph raises instead of running flex eagerly (N x N scores)."""
    options = dict(fullgraph=True, dynamic=None if cuda else False)
    accepted = inspect.signature(torch.compile).parameters
    if "recompile_limit" in accepted:  # torch >= 2.12
        options.update(recompile_limit=RECOMPILE_LIMIT, **({"isolate_recompiles": True}
                                                           if "isolate_recompiles" in accepted else {}))
    else:  # older torch: the process-wide limit (named cache_size_limit before 2.6)
        config = torch._dynamo.config
        name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
        setattr(config, name, max(getattr(config, name), RECOMPILE_LIMIT))
    return torch.compile(flex_attention, **options)


def lsg_attention_flex(query, key, value, keep=None, *, block_size, sparse_block_size, sparsity_factor,
                       sparsity_type, num_global_tokens, scaling=None, causal=False):
    """lsg.lsg_attention (without dropout) as one flex_attention call; keep [B, N], 1 = token."""
    N, D = query.shape[2:]
    g, b, f, s = min(num_global_tokens, N), block_size, sparsity_factor, sparse_block_size
    scaling = D ** -0.5 if scaling is None else scaling
    keep = keep_mask(query, keep)
    if g == N:
        return global_query_attention(query, key, value, keep, g, scaling, 0.0, causal)
    keys, values, keep_kv = key, value, keep[:, None]                              # keep_kv [B, 1 or H, N + M]
    r = M = 0
    if uses_sparse_keys(s, sparsity_type):
        keep_x = pad_to_blocks(keep[:, g:], b, dim=1, value=False)
        kx, vx = (pad_to_blocks(t[:, :, g:], b, dim=2) for t in (key, value))
        ks, vs, keep_s = sparse_keys(kx, vx, keep_x, sparsity_type=sparsity_type, sparsity_factor=f, block_size=b,
                                     sparse_block_size=s, query_first=query[:, :, g], scaling=scaling)
        r, M = b // f, ks.shape[2]
        keys, values = torch.cat([key, ks], dim=2), torch.cat([value, vs], dim=2)
        keep_kv = torch.cat([keep_kv.expand(-1, keep_s.shape[1], -1), keep_s], dim=2)
    per_head = keep_kv.shape[1] > 1

    def mask_mod(batch, head, q, kv):  # q: non-global query q, in block q // b; kv: into [global | tokens | sparse]
        i, j = q // b, kv - N
        near = ((kv - g) // b - i).abs() <= 1
        if causal:
            near = near & (kv <= g + q)
        seen = (kv < g) | ((kv < N) & near)                                         # globals, blocks i-1..i+1
        left, right = (i - 1) * r - s, (i + 2) * r                                 # sparse windows (none if M = 0)
        windows = (j >= left) & (j < left + s)
        if not causal:
            windows = windows | ((j >= right) & (j < right + s))
        seen = seen | ((j >= 0) & windows)
        return seen & keep_kv[batch, head if per_head else 0, kv]

    tiles = _lsg_tiles(N - g, g, b, r, s, M, TILE, query.device, causal)
    out = _flex(query[:, :, g:], keys, values, _block_mask(tiles, keep_kv, mask_mod), scaling)
    return _with_global_queries(out, query, key, value, keep, g, scaling, causal)


def local_attention_flex(query, key, value, keep=None, *, mode, window, block_size, num_global_tokens, scaling=None,
                         causal=False):
    """local.local_attention (without dropout) as one flex_attention call; keep [B, N], 1 = token."""
    N, D = query.shape[2:]
    g, w, b = min(num_global_tokens, N), window // 2, block_size
    scaling = D ** -0.5 if scaling is None else scaling
    keep = keep_mask(query, keep)
    if g == N:
        return global_query_attention(query, key, value, keep, g, scaling, 0.0, causal)
    sliding = mode == "sliding"

    def mask_mod(batch, head, q, kv):  # q: non-global query q, at position g + q
        near = (g + q - kv).abs() <= w if sliding else (kv - g) // b == q // b
        if causal:
            near = near & (kv <= g + q)
        return ((kv < g) | near) & keep[batch, kv]

    tiles = (_sliding_tiles if sliding else _disjoint_tiles)(N - g, g, w if sliding else b, TILE, query.device, causal)
    out = _flex(query[:, :, g:], key, value, _block_mask(tiles, keep[:, None], mask_mod), scaling)
    return _with_global_queries(out, query, key, value, keep, g, scaling, causal)


def _flex(query, keys, values, block_mask, scaling):
    if not query.is_cuda and torch.is_grad_enabled() and any(t.requires_grad for t in (query, keys, values)):
        raise NotImplementedError(f"FlexAttention has no backward on CPU (torch {torch.__version__}): use "
                                  f"backend=auto or blocks to train on a CPU")
    global calls
    calls += 1
    flex = compiled_flex(query.is_cuda) if COMPILE else flex_attention
    return flex(query, keys, values, block_mask=block_mask, scale=scaling)


def _with_global_queries(out, query, key, value, keep, g, scaling, causal):
    """The outputs of the non-global queries preceded by those of the g global ones (every key; causal: the globals)."""
    if not g:
        return out
    return torch.cat([global_query_attention(query, key, value, keep, g, scaling, 0.0, causal), out], dim=2)


# ------------------------------------------------------------------ block layouts
# A layout is (seen, whole, lengths): seen [Qt, KVt] (query tile t touches kv tile u), whole [Qt, KVt] (every
# query of t may see every key of u, padding aside) and (queries, keys). A ragged last tile is never whole
# (as in create_block_mask). Each key set is a few disjoint intervals of key positions.

def _cover(lo, hi, length, tile):
    """How many keys of each kv tile lie in the intervals [lo[k], hi[k]) (tensors [G], disjoint for each
    of G rows) -> [G, KVt]."""
    start = torch.arange(0, length, tile, device=lo[0].device)
    stop = (start + tile).clamp(max=length)
    return sum((torch.minimum(h[:, None], stop) - torch.maximum(l[:, None], start)).clamp(min=0)
               for l, h in zip(lo, hi))


def _by_query_tile(seen, whole, group, n, tile):
    """A layout per group of `group` queries (the queries of a group see the same keys) -> per query tile:
    seen if one of its groups sees, whole if all of them see whole."""
    start = torch.arange(0, n, tile, device=seen.device)
    stop = (start + tile).clamp(max=n)
    first, last = start // group, (stop - 1) // group

    def total(x):  # over the groups first..last of each tile
        c = F.pad(x.int().cumsum(0), [0, 0, 1, 0])
        return c[last + 1] - c[first]

    return total(seen) > 0, (total(~whole) == 0) & (stop - start == tile)[:, None]


@functools.lru_cache(maxsize=64)
def _lsg_tiles(n, g, b, r, s, M, tile, device, causal):
    """LSG: block i of queries sees the globals, tokens of blocks i-1..i+1 and two windows of sparse keys (causal:
    blocks i-1 and i, of which only i-1 is seen by all its queries, and the left window)."""
    N, i = g + n, torch.arange(-(-n // b), device=device)
    sparse = lambda x: N + x.clamp(0, M)  # noqa: E731
    last_block = i + (1 if causal else 2)
    lo = [torch.zeros_like(i), g + ((i - 1) * b).clamp(0, n), sparse((i - 1) * r - s)]
    hi = [torch.full_like(i, g), g + (last_block * b).clamp(0, n), sparse((i - 1) * r)]
    if not causal:
        lo, hi = lo + [sparse((i + 2) * r)], hi + [sparse((i + 2) * r + s)]
    covered = _cover(lo, hi, N + M, tile)
    whole = covered
    if causal:  # every query of block i sees block i-1 whole, but its own block only up to itself
        whole = _cover([lo[0], lo[1], lo[2]], [hi[0], g + (i * b).clamp(0, n), hi[2]], N + M, tile)
    return (*_by_query_tile(covered > 0, whole == tile, b, n, tile), (n, N + M))


@functools.lru_cache(maxsize=64)
def _disjoint_tiles(n, g, b, tile, device, causal):
    """Local disjoint: block i of queries sees the globals and its own block (causal: up to itself; whole: the globals)."""
    i = torch.arange(-(-n // b), device=device)
    lo, hi = [torch.zeros_like(i), g + i * b], [torch.full_like(i, g), g + ((i + 1) * b).clamp(max=n)]
    covered = _cover(lo, hi, g + n, tile)
    whole = _cover(lo[:1], hi[:1], g + n, tile) if causal else covered
    return (*_by_query_tile(covered > 0, whole == tile, b, n, tile), (n, g + n))


@functools.lru_cache(maxsize=64)
def _sliding_tiles(n, g, w, tile, device, causal):
    """Local sliding: query q sees the globals and tokens q-w..q+w (causal: q-w..q); over a tile of queries q0..q1
    the windows (consecutive ones overlap) join to q0-w..q1+w, and q1-w..q0+w is in all of them."""
    q0 = torch.arange(0, n, tile, device=device)
    q1 = (q0 + tile).clamp(max=n) - 1
    ahead = 0 if causal else w
    zero, glob = torch.zeros_like(q0), torch.full_like(q0, g)
    tokens = lambda a, e: (g + a.clamp(0, n), g + e.clamp(0, n))  # noqa: E731  keys of tokens [a, e)
    any_lo, any_hi = tokens(q0 - w, q1 + ahead + 1)                 # holds every query's window
    all_lo, all_hi = tokens(q1 - w, q0 + ahead + 1)                 # inside every query's window
    seen = _cover([zero, any_lo], [glob, any_hi], g + n, tile) > 0
    whole = _cover([zero, all_lo], [glob, all_hi], g + n, tile) == tile
    return seen, whole & (q1 + 1 - q0 == tile)[:, None], (n, g + n)


def _ordered(x):
    """[.., Qt, KVt] bool -> BlockMask's (counts, indices): each row's True kv tiles first."""
    return x.sum(-1, dtype=torch.int32), x.int().argsort(dim=-1, descending=True, stable=True).int()


def _block_mask(tiles, keep_kv, mask_mod) -> BlockMask:
    """The BlockMask of a cached layout for this call: a whole tile holding a padded key (in any head) is
    partial, so that mask_mod masks it. Shape [B, 1, Qt, KVt] (heads share it)."""
    seen, whole, lengths = tiles
    B = keep_kv.shape[0]
    kept = pad_to_blocks(keep_kv.all(1), TILE, dim=1, value=False).view(B, 1, 1, -1, TILE).all(-1)
    whole = whole & kept                                                               # [B, 1, Qt, KVt]
    return BlockMask.from_kv_blocks(*_ordered(seen & ~whole), *_ordered(whole), BLOCK_SIZE=TILE,
                                    mask_mod=mask_mod, seq_lengths=lengths)
