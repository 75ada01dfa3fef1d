"""Pieces the block kernels (LSG, local, dilated) and their dense references share.

Shapes: B batch, H heads, N tokens, D head dim; g global tokens lead the sequence; `keep` [B, N]
is True for real tokens and False for padding.

Causal (decoders): every kernel takes `causal`; its pattern is then the bidirectional one restricted to keys
at or before the query (key position <= query position). The g global tokens become attention sinks: they see
the globals before them, and every query sees them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

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


def repeat_kv(key, value, heads: int):
    """Grouped K/V heads [B, H_kv, N, D] repeated to serve `heads` query heads, as transformers' repeat_kv."""
    if key.shape[1] == heads:
        return key, value
    return (t.repeat_interleave(heads // t.shape[1], dim=1) for t in (key, value))


def global_query_attention(query, key, value, keep, g, scaling, dropout, causal=False):
    """The g global queries attend to every non-padding key (causal: to the globals up to themselves): [B, H, g, D].
    key and value may have fewer heads (grouped-query attention)."""
    if causal:
        key, value, keep = key[:, :, :g], value[:, :, :g], keep[:, :g]
    allowed = keep[:, None, None, :]
    if causal:
        allowed = allowed & torch.ones(g, g, dtype=torch.bool, device=keep.device).tril()
    out = F.scaled_dot_product_attention(query[:, :, :g], key, value, attn_mask=allowed, dropout_p=dropout,
                                         scale=scaling, enable_gqa=key.shape[1] != query.shape[1])
    return out.masked_fill(~allowed.any(-1, keepdim=True), 0.0)


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


def pattern_attention(query, key, value, keep, pattern, scaling, causal=False):
    """The dense oracle for a fixed pattern [(H,) N, N] (query i may see key j) under the padding mask; causal:
    restricted to keys j <= i."""
    B, H, N, _ = query.shape
    if causal:
        pattern = pattern & torch.ones(N, N, dtype=torch.bool, device=query.device).tril()
    allowed = (pattern.view(-1, N, N)[None] & keep_mask(query, keep)[:, None, None, :]).expand(B, H, N, N)
    return masked_attention(query, key, value, allowed, scaling)


# ------------------------------------------------------------------ memory-lean pieces
# The block kernels gather, for every block of queries, copies of its keys (neighbour blocks, global
# keys, sparse keys): several times the size of K and V. Kept whole for backward they dominate the
# memory of training. Instead a kernel describes its work as pieces (a few blocks of a few batch rows
# each), every piece reading slices of the kernel's inputs; `attend_pieces` runs them one at a time,
# keeps only the inputs for backward, and in backward regathers and reruns each piece on its slices
# to get that piece's gradients. At most one piece's gathered copies and scores exist at a time.
# Inputs a kernel derives from its inputs (LSG's sparse keys) are made the same way, piece by piece,
# so their gradients are added into the inputs' ones in place, without a gradient the size of K.

# How big a piece is, in attention scores (batch x heads x queries x keys), or key elements for a piece of sparse
# keys, depends on the device. A CPU is arithmetic-bound: lean pieces (~16 MB of scores, probabilities and their
# gradients in fp32) cost no time there. A GPU pays for every launch (~13 ops a piece forward, ~48 with backward,
# tens of microseconds each): its pieces come from a memory budget, a share of the device's memory at about
# BYTES_PER_SCORE transient bytes a score (gathered keys and values, the mask, their gradients), which makes one
# or a few pieces per layer call at the lengths researchers train.
CPU_PIECE_SCORES = 2**20
CUDA_MEMORY_SHARE = 32  # a piece's transient memory stays within 1/32 of the device's memory
BYTES_PER_SCORE = 8
PIECE_SCORES: int | None = None  # None: the device's policy (piece_scores); an int forces it (tests, op counts)
RECOMPUTE = True      # False: plain autograd over the same pieces (keeps every piece's copies; tests compare)


def cuda_piece_scores(memory_bytes: int) -> int:
    """The scores of a piece on a GPU with `memory_bytes` of memory (about 2**28 on an 80 GB H100)."""
    return memory_bytes // CUDA_MEMORY_SHARE // BYTES_PER_SCORE


def piece_scores(device: torch.device) -> int:
    if PIECE_SCORES is not None:
        return PIECE_SCORES
    if device.type == "cuda":
        return cuda_piece_scores(torch.cuda.get_device_properties(device).total_memory)
    return CPU_PIECE_SCORES


@dataclasses.dataclass(frozen=True)
class Piece:
    """Rows [rows) (dim 2) of batch rows [batch) of the output(s) are `attend(*slices)` (a tensor, or a
    tuple for several outputs), slices[j] being inputs[i][batch, :, start:stop] for windows[j] = (i, start, stop)."""
    batch: tuple[int, int]
    rows: tuple[int, int]
    windows: tuple[tuple[int, int, int], ...]
    attend: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]]


@dataclasses.dataclass(frozen=True)
class Derived:
    """Inputs made from the others by pieces (each returning a tuple, one tensor per derived input, the
    same number every time): the derived inputs are `length` rows long and pieces read them as inputs
    len(inputs), len(inputs) + 1, ... Their pieces must be deterministic: backward remakes them."""
    pieces: tuple[Piece, ...]
    length: int


def block_pieces(batch: int, blocks: int, per_block: int,
                 device: torch.device) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(batch range, block range) pairs covering batch x blocks, each of at most piece_scores(device) elements
    (`per_block` per block of one row; at least one block of one row)."""
    per_row, budget = blocks * per_block, piece_scores(device)
    if per_row <= budget:
        rows = max(1, budget // max(per_row, 1))
        return [((r, min(r + rows, batch)), (0, blocks)) for r in range(0, batch, rows)]
    n = max(1, budget // per_block)
    return [((r, r + 1), (i, min(i + n, blocks))) for r in range(batch) for i in range(0, blocks, n)]


def clip(start: int, stop: int, lo: int, hi: int) -> tuple[int, int]:
    """The part of positions [start, stop) inside [lo, hi), as (a, e) with a <= e (empty: a == e)."""
    a, e = max(start, lo), min(stop, hi)
    return a, max(a, e)


def fit(x: torch.Tensor, start: int, stop: int, lo: int, hi: int, fill=0.0) -> torch.Tensor:
    """x holds positions clip(start, stop, lo, hi) of a sequence along dim 2: positions [start, stop),
    `fill` outside [lo, hi)."""
    a, e = clip(start, stop, lo, hi)
    if e == a:
        return x.new_full((*x.shape[:2], stop - start, *x.shape[3:]), fill)
    if a == start and e == stop:
        return x
    return F.pad(x, [0, 0] * (x.dim() - 3) + [a - start, stop - e], value=fill)


def global_query_pieces(batch: int, length: int, keep, g: int, scaling, dropout, causal=False) -> list[Piece]:
    """The piece of the g global queries over the inputs [query, key, value]: every key, or causal the globals
    (none if g = 0)."""
    if not g:
        return []
    keys = g if causal else length
    return [Piece((0, batch), (0, g), ((0, 0, g), (1, 0, keys), (2, 0, keys)),
                  lambda q, k, v: global_query_attention(q, k, v, keep[:, :keys], g, scaling, dropout, causal))]


def attend_pieces(inputs: list[torch.Tensor], pieces: list[Piece], length: int,
                  derived: Derived | None = None, dropout: bool = False) -> torch.Tensor:
    """The output [B, H, length, D] assembled from `pieces` over `inputs` (each [B, *, L, *]) and the
    `derived` ones. When gradients are wanted, backward reruns the pieces instead of keeping what
    they made. With `dropout` (the pieces draw random numbers) the reruns draw the same masks again: the CPU
    (and CUDA) random state before each piece is saved in forward and restored for its rerun; autocast is
    restored too."""
    if RECOMPUTE and torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        return _Recomputed.apply(pieces, length, derived, dropout, *inputs)
    return _run(_with_derived(inputs, derived), pieces, length)[0]


def _with_derived(inputs, derived: Derived | None) -> list[torch.Tensor]:
    return list(inputs) if derived is None else [*inputs, *_run(inputs, derived.pieces, derived.length)]


def _slices(inputs, piece: Piece):
    r0, r1 = piece.batch
    return [inputs[i][r0:r1, :, a:e] for i, a, e in piece.windows]


def _outputs(made) -> tuple[torch.Tensor, ...]:
    return made if isinstance(made, tuple) else (made,)


def _run(inputs, pieces, length, rng_states=None) -> list[torch.Tensor]:
    """The outputs [B, *, length, *] the pieces make, assembled."""
    outs = None
    for piece in pieces:
        if rng_states is not None:
            rng_states.append(_rng_state(inputs[0].device))
        parts = _outputs(piece.attend(*_slices(inputs, piece)))
        if outs is None:
            outs = [p.new_empty(inputs[0].shape[0], p.shape[1], length, *p.shape[3:]) for p in parts]
        for out, part in zip(outs, parts):
            out[piece.batch[0]:piece.batch[1], :, piece.rows[0]:piece.rows[1]] = part
    return outs


def _rng_state(device: torch.device):
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_state(device: torch.device, state) -> None:
    torch.set_rng_state(state[0])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state[1], device)


class _Recomputed(torch.autograd.Function):
    """attend_pieces keeping only its inputs: backward remakes the derived inputs, reruns each piece (same
    random state, same autocast) with autograd on that piece's slices and adds their gradients into the
    inputs' ones; then the derived inputs' gradients flow back the same way through their pieces."""

    @staticmethod
    def forward(ctx, pieces, length, derived, dropout, *inputs):
        device = inputs[0].device
        ctx.pieces, ctx.derived = pieces, derived
        ctx.autocast = (device.type, torch.is_autocast_enabled(device.type), torch.get_autocast_dtype(device.type))
        ctx.rng_states = [] if dropout else None  # before each piece: dropout draws the same masks again in backward
        out = _run(_with_derived(inputs, derived), pieces, length, ctx.rng_states)[0]
        ctx.save_for_backward(*inputs)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        inputs = ctx.saved_tensors
        device = inputs[0].device
        need = list(ctx.needs_input_grad[4:])
        current = _rng_state(device) if ctx.rng_states is not None else None
        device_type, enabled, dtype = ctx.autocast
        n, derived = len(inputs), ctx.derived.pieces if ctx.derived else ()
        try:
            with torch.autocast(device_type, dtype=dtype, enabled=enabled):
                every = _with_derived(inputs, ctx.derived)
                sources_need = any(need[i] for piece in derived for i, _, _ in piece.windows)
                need += [sources_need and t.is_floating_point() for t in every[n:]]
                grads = [None] * len(every)  # made by the first piece that reads the input
                with torch.enable_grad():
                    for piece, state in zip(ctx.pieces, ctx.rng_states or [None] * len(ctx.pieces)):
                        if state is not None:  # dropout: the masks forward drew
                            _set_rng_state(device, state)
                        _add_piece_grads(piece, every, need, grads, [grad_out])
                    del every  # of the derived inputs only their gradients are needed now
                    derived_grads, grads = grads[n:], grads[:n]
                    for piece in derived:
                        _add_piece_grads(piece, inputs, need, grads, derived_grads)
        finally:
            if current is not None:
                _set_rng_state(device, current)
        return (None, None, None, None, *(torch.zeros_like(t) if wanted and grad is None else grad
                                     for t, wanted, grad in zip(inputs, need, grads)))


def _add_piece_grads(piece: Piece, inputs, need, grads, grad_outs) -> None:
    """Rerun `piece` with autograd on its slices and add their gradients, given those of its outputs
    (rows of grad_outs; None: no gradient), into grads[i] (made on first use; a gradient of all of
    input i is kept as is)."""
    slices = [s.detach().requires_grad_(need[i]) for s, (i, _, _) in zip(_slices(inputs, piece), piece.windows)]
    wanted = [(s, w) for s, w in zip(slices, piece.windows) if s.requires_grad]
    if not wanted:
        return
    (r0, r1), (a, e) = piece.batch, piece.rows
    pairs = [(out, grad[r0:r1, :, a:e]) for out, grad in zip(_outputs(piece.attend(*slices)), grad_outs)
             if grad is not None and out.requires_grad]
    if not pairs:
        return
    found = torch.autograd.grad([out for out, _ in pairs], [s for s, _ in wanted], [grad for _, grad in pairs],
                                allow_unused=True)
    for g, (_, (i, start, stop)) in zip(found, wanted):
        if g is None:
            continue
        if grads[i] is None and g.shape == inputs[i].shape and (g.is_contiguous() or g.transpose(1, 2).is_contiguous()):
            grads[i] = g  # SDPA's gradients are [B, N, H, D] in memory: keep them too, no copy
        else:
            if grads[i] is None:
                grads[i] = torch.zeros_like(inputs[i])
            grads[i][r0:r1, :, start:stop] += g
