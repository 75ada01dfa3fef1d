"""FlexAttention (torch.nn.attention.flex_attention) versions of the LSG and local kernels: a GPU fast path.

The non-global queries run as one flex_attention call over the keys [tokens | sparse (M) | global (g)] (sparse
keys: LSG only, made by sparse.sparse_keys from the block-padded keys), laid out so that blocks of tokens start on
tiles as the queries do. What a query may see is said twice:
- a mask_mod, exact for every (query, key) pair, pattern and padding (it reads captured keep tensors);
- a BlockMask over tiles of TILE queries x TILE keys, built from the known layout (never by evaluating the mask
  over all pairs): the kv tiles each query tile touches, and those it sees whole. Flex skips the other tiles and
  applies no mask_mod on whole ones. The layout is cached per (knobs, length, device); under padding, whole tiles
  that may hold a padded key turn partial. The BlockMask is made once per forward (memo.once_per: every layer
  passes the same padding mask) and each call only attaches its mask_mod.
So the BlockMask is only an optimisation: eager flex (which ignores it and masks with mask_mod alone) and
compiled flex give the same outputs. The g global queries see every key, as in the block kernels (blocks.py).
Causal (decoders): the mask_mod adds key <= query (for sparse keys: the left window only). The layouts leave
a query block's own block partial (LSG, disjoint): correct, if a few tiles below the diagonal run mask_mod.
Grouped K/V heads (fewer than the queries') go to flex as they are (enable_gqa).

Memory: O(N) for the attention (compiled flex), plus O(B (N / TILE)^2) small ints for the block tables.
No dropout. Backward needs CUDA: on CPU flex refuses inputs that require grad (eager or compiled); it has a
compiled CPU forward (seconds to compile per shape and knobs).
"""

from __future__ import annotations

import copy
import functools
import inspect

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from ..measure import KernelOps
from .blocks import global_query_attention, keep_mask, pad_to_blocks, repeat_kv
from .memo import once_per
from .sparse import ON_KV_HEADS, sparse_keys, uses_sparse_keys

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
    """lsg.lsg_attention (without dropout) as one flex_attention call; keep [B, N], 1 = token. key and value may
    have fewer heads than query (grouped-query attention: each serves H / H_kv query heads, through enable_gqa)."""
    B, H, N, D = query.shape
    g, b, f, s = min(num_global_tokens, N), block_size, sparsity_factor, sparse_block_size
    scaling = D ** -0.5 if scaling is None else scaling
    keep = keep_mask(query, keep)
    if g == N:
        return global_query_attention(query, key, value, keep, g, scaling, 0.0, causal)
    if sparsity_type not in ON_KV_HEADS:  # its sparse keys differ by query head
        key, value = repeat_kv(key, value, H)
    n, nb, group = N - g, -(-(N - g) // b), H // key.shape[1]
    sparse = uses_sparse_keys(s, sparsity_type)
    r, M, T = (b // f, nb * b // f, nb * b) if sparse else (0, 0, n)  # token keys [0, T), sparse [T, T + M)
    layout = ("lsg", B, n, g, b, r, s, M, T, sparsity_type == "lsh", causal, TILE, query.device)

    def tiles_and_kept():
        keep_tokens = pad_to_blocks(keep[:, g:], b, dim=1, value=False) if sparse else keep[:, g:]   # [B, T]
        # A sparse key is surely kept when the block it is made from has no padding (lsh: an empty bucket is not)
        from_kept_block = keep_tokens.view(B, nb, b).all(-1).repeat_interleave(r, dim=1) if sparse else keep[:, :0]
        if sparsity_type == "lsh":
            from_kept_block = torch.zeros_like(from_kept_block)
        kept = torch.cat([keep_tokens, from_kept_block, keep[:, :g]], dim=1)
        return _lsg_tiles(n, g, b, r, s, M, T, TILE, query.device, causal), kept, keep_tokens

    block_mask, kept, keep_tokens = _block_mask(keep, layout, tiles_and_kept)
    keys, values, keep_kv = key[:, :, g:], value[:, :, g:], kept[:, None]                   # keep_kv [B, 1 or H_kv, kv]
    if sparse:
        keys, values = (pad_to_blocks(t, b, dim=2) for t in (keys, values))
        ks, vs, keep_s = sparse_keys(keys, values, keep_tokens, sparsity_type=sparsity_type, sparsity_factor=f,
                                     block_size=b, sparse_block_size=s, query_first=query[:, :, g], scaling=scaling)
        keys, values = torch.cat([keys, ks, key[:, :, :g]], dim=2), torch.cat([values, vs, value[:, :, :g]], dim=2)
        heads = keep_s.shape[1]
        keep_kv = torch.cat([keep_tokens[:, None].expand(-1, heads, -1), keep_s,
                             keep[:, None, :g].expand(-1, heads, -1)], dim=2)
    elif g:
        keys, values = _globals_last(key, value, g)
    per_head = keep_kv.shape[1] > 1

    def mask_mod(batch, head, q, kv):  # q: non-global query q, in block q // b; kv: into [tokens | sparse | global]
        i, j = q // b, kv - T
        near = (kv < T) & ((kv // b - i).abs() <= 1)                               # blocks i-1..i+1
        if causal:
            near = near & (kv <= q)
        left, right = (i - 1) * r - s, (i + 2) * r                                 # sparse windows (none if M = 0)
        windows = (j >= left) & (j < left + s)
        if not causal:
            windows = windows | ((j >= right) & (j < right + s))
        seen = near | ((j >= 0) & (j < M) & windows) | (j >= M)                    # j >= M: the globals
        return seen & keep_kv[batch, head // group if per_head else 0, kv]

    out = _flex(query[:, :, g:], keys, values, _with_mask_mod(block_mask, mask_mod), scaling)
    return _with_global_queries(out, query, key, value, keep, g, scaling, causal)


def local_attention_flex(query, key, value, keep=None, *, mode, window, block_size, num_global_tokens, scaling=None,
                         causal=False):
    """local.local_attention (without dropout) as one flex_attention call; keep [B, N], 1 = token. key and value may
    have fewer heads than query (grouped-query attention, through enable_gqa)."""
    B, H, N, D = query.shape
    g, w, b = min(num_global_tokens, N), window // 2, block_size
    scaling = D ** -0.5 if scaling is None else scaling
    keep = keep_mask(query, keep)
    if g == N:
        return global_query_attention(query, key, value, keep, g, scaling, 0.0, causal)
    n, sliding = N - g, mode == "sliding"
    layout = ("local", B, n, g, w if sliding else b, sliding, causal, TILE, query.device)

    def tiles_and_kept():
        tiles = (_sliding_tiles if sliding else _disjoint_tiles)(n, g, w if sliding else b, TILE, query.device, causal)
        return tiles, keep.roll(-g, dims=1), None  # keys [tokens | globals]

    block_mask, keep_kv, _ = _block_mask(keep, layout, tiles_and_kept)
    keys, values = _globals_last(key, value, g) if g else (key, value)

    def mask_mod(batch, head, q, kv):  # q: non-global query q; kv: into [tokens | globals]
        near = (q - kv).abs() <= w if sliding else kv // b == q // b
        if causal:
            near = near & (kv <= q)
        return ((kv >= n) | near) & keep_kv[batch, kv]

    out = _flex(query[:, :, g:], keys, values, _with_mask_mod(block_mask, mask_mod), scaling)
    return _with_global_queries(out, query, key, value, keep, g, scaling, causal)


def _globals_last(key, value, g):
    """K and V laid out [tokens | globals] (one copy each), as the layouts read them."""
    return (torch.cat([t[:, :, g:], t[:, :, :g]], dim=2) for t in (key, value))


def _flex(query, keys, values, block_mask, scaling):
    if not query.is_cuda and torch.is_grad_enabled() and any(t.requires_grad for t in (query, keys, values)):
        raise NotImplementedError(f"FlexAttention has no backward on CPU (torch {torch.__version__}): use "
                                  f"backend=auto or blocks to train on a CPU")
    global calls
    calls += 1
    flex = compiled_flex(query.is_cuda) if COMPILE else flex_attention
    # Counted as one op by the benchmark's op count (a compiled kernel; eager flex is a CPU test path)
    return KernelOps.opaque("flex_attention", lambda: flex(query, keys, values, block_mask=block_mask, scale=scaling,
                                                           enable_gqa=keys.shape[1] != query.shape[1]))


def _with_global_queries(out, query, key, value, keep, g, scaling, causal):
    """The outputs of the non-global queries preceded by those of the g global ones (every key; causal: the globals),
    laid out [B, N, H, D] in memory as transformers reads them (no copy to come)."""
    if not g:
        return out
    glob = global_query_attention(query, key, value, keep, g, scaling, 0.0, causal)
    return torch.cat([glob.transpose(1, 2), out.transpose(1, 2)], dim=1).transpose(1, 2)


# ------------------------------------------------------------------ block layouts
# Keys are laid out [tokens | sparse keys (LSG) | globals] so that blocks of tokens start on tiles as queries do
# (the queries are the tokens, the globals' own queries run apart): a block of 128 is one tile of queries and
# one of keys, not two of each. A layout is (seen, whole, lengths): seen [Qt, KVt] (query tile t touches kv tile
# u), whole [Qt, KVt] (every query of t may see every key of u, padding aside) and (queries, keys). A ragged last
# tile is never whole (as in create_block_mask). Each key set is a few disjoint intervals of key positions.

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


def _globals(like, start, g):
    """The interval of the g global keys, which every query sees, from `start` (none if g = 0)."""
    return ([torch.full_like(like, start)], [torch.full_like(like, start + g)]) if g else ([], [])


def _not_ahead(n, T, length, tile, causal, device):
    """[Qt, KVt]: False for the tiles of token keys (those in [0, T)) that begin after a query tile's last query,
    which no query of it sees causally (a block straddling two query tiles would list them); True elsewhere."""
    if not causal:
        return True
    last = (torch.arange(0, n, tile, device=device) + tile).clamp(max=n) - 1
    start = torch.arange(0, length, tile, device=device)
    return ~((start[None, :] > last[:, None]) & (start + tile <= T)[None, :])


@functools.lru_cache(maxsize=64)
def _lsg_tiles(n, g, b, r, s, M, T, tile, device, causal):
    """LSG: block i of queries sees tokens of blocks i-1..i+1, two windows of sparse keys and the globals (causal:
    blocks i-1 and i, of which only i-1 is seen by all its queries, and the left window)."""
    i = torch.arange(-(-n // b), device=device)
    sparse = lambda x: T + x.clamp(0, M)  # noqa: E731
    glob_lo, glob_hi = _globals(i, T + M, g)
    lo = [((i - 1) * b).clamp(0, n), sparse((i - 1) * r - s), *glob_lo]
    hi = [((i + (1 if causal else 2)) * b).clamp(0, n), sparse((i - 1) * r), *glob_hi]
    if not causal:
        lo, hi = lo + [sparse((i + 2) * r)], hi + [sparse((i + 2) * r + s)]
    covered = _cover(lo, hi, T + M + g, tile)
    whole = covered
    if causal:  # every query of block i sees block i-1 whole, but its own block only up to itself
        whole = _cover(lo[:3], [(i * b).clamp(0, n), *hi[1:3]], T + M + g, tile)
    seen, whole = _by_query_tile(covered > 0, whole == tile, b, n, tile)
    return seen & _not_ahead(n, T, T + M + g, tile, causal, device), whole, (n, T + M + g)


@functools.lru_cache(maxsize=64)
def _disjoint_tiles(n, g, b, tile, device, causal):
    """Local disjoint: block i of queries sees its own block (causal: up to itself) and the globals."""
    i = torch.arange(-(-n // b), device=device)
    glob_lo, glob_hi = _globals(i, n, g)
    lo, hi = [i * b, *glob_lo], [((i + 1) * b).clamp(max=n), *glob_hi]
    covered = _cover(lo, hi, n + g, tile)
    whole = covered
    if causal:  # a block sees its own block only up to itself
        whole = _cover(lo[1:], hi[1:], n + g, tile) if g else torch.zeros_like(covered)
    seen, whole = _by_query_tile(covered > 0, whole == tile, b, n, tile)
    return seen & _not_ahead(n, n, n + g, tile, causal, device), whole, (n, n + g)


@functools.lru_cache(maxsize=64)
def _sliding_tiles(n, g, w, tile, device, causal):
    """Local sliding: query q sees tokens q-w..q+w (causal: q-w..q) and the globals; over a tile of queries q0..q1
    the windows (consecutive ones overlap) join to q0-w..q1+w, and q1-w..q0+w is in all of them."""
    q0 = torch.arange(0, n, tile, device=device)
    q1 = (q0 + tile).clamp(max=n) - 1
    ahead = 0 if causal else w
    glob_lo, glob_hi = _globals(q0, n, g)
    seen = _cover([(q0 - w).clamp(0, n), *glob_lo], [(q1 + ahead + 1).clamp(0, n), *glob_hi], n + g, tile) > 0
    whole = _cover([(q1 - w).clamp(0, n), *glob_lo], [(q0 + ahead + 1).clamp(0, n), *glob_hi], n + g, tile) == tile
    return seen, whole & (q1 + 1 - q0 == tile)[:, None], (n, n + g)


def _ordered(x):
    """[.., Qt, KVt] bool -> BlockMask's (counts, indices): each row's True kv tiles first."""
    return x.sum(-1, dtype=torch.int32), x.int().argsort(dim=-1, descending=True, stable=True).int()


def _block_mask(keep, layout: tuple, tiles_and_kept):
    """(the BlockMask of a layout under this padding, without its mask_mod; kept; what else the kernel derives from
    keep), made once per forward: every layer passes the same keep (memo.once_per). tiles_and_kept() -> (the cached
    layout, kept [B, kv]: True where the key is surely kept, the rest). A whole tile holding a key that may be padded
    is partial, so that mask_mod masks it. Shape [B, 1, Qt, KVt] (heads share it)."""
    def make():
        (seen, whole, lengths), kept, derived = tiles_and_kept()
        B = kept.shape[0]
        whole = whole & pad_to_blocks(kept, TILE, dim=1, value=False).view(B, 1, 1, -1, TILE).all(-1)  # [B, 1, Qt, KVt]
        block_mask = BlockMask.from_kv_blocks(*_ordered(seen & ~whole), *_ordered(whole), BLOCK_SIZE=TILE,
                                              seq_lengths=lengths)
        return block_mask, kept, derived
    return once_per(keep, layout, make)


def _with_mask_mod(block_mask: BlockMask, mask_mod) -> BlockMask:
    """The shared BlockMask with this call's mask_mod (which reads this call's sparse keys' padding): no op."""
    block_mask = copy.copy(block_mask)
    block_mask.mask_mod = mask_mod
    return block_mask
