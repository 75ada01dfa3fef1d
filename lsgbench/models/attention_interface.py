"""The one place lsgbench's converted variants join transformers: each is registered with
`AttentionInterface` (the attention function) and `AttentionMaskInterface` (a mask function that
passes the 2D padding mask through, so no N x N mask is ever built) under its variant name."""

from __future__ import annotations

import torch
from transformers import AttentionInterface, AttentionMaskInterface

from ..attention import VARIANTS
from ..attention.blocks import keep_with_globals, repeat_kv
from ..attention.memo import once_per


def attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, position_ids=None, **_):
    """[B, H, N, D] in, [B, N, H, D] out. `module.long_attention` holds the knobs (set at install);
    `attention_mask` is the 2D padding mask, made before the global tokens were prepended, and the same object in
    every layer of a forward (what is derived from it is made once per forward: memo.once_per). A module
    transformers declares causal (a decoder's) runs the variant causally; grouped K/V heads serve their query heads
    (the kernels that take them as they are say so: `grouped_kv`)."""
    knobs = module.long_attention
    B, H, N, _ = query.shape
    dropout = (dropout if knobs.dropout is None else knobs.dropout) if module.training else 0.0
    if key.shape[2] != N:  # generation: new queries over a KV cache
        key, value = repeat_kv(key, value, H)
        K = key.shape[2]
        keep = None if attention_mask is None else attention_mask[:, -K:].to(torch.bool)
        start = _tokens_so_far(attention_mask, position_ids, K) - K  # the position of the first cached key
        out = knobs.attend_cached(query, key, value, keep, scaling, start)
        return out.transpose(1, 2).contiguous(), None
    if not knobs.grouped_kv(query, dropout):
        key, value = repeat_kv(key, value, H)
    g = knobs.num_global_tokens
    keep = once_per(attention_mask, ("keep", B, N, g, knobs.mask_first_token, query.device),
                    lambda: _keep(attention_mask, B, N, g, knobs.mask_first_token, query.device))
    out = knobs.attend(query, key, value, keep, scaling, dropout, causal=getattr(module, "is_causal", False))
    return out.transpose(1, 2).contiguous(), None


def _keep(attention_mask, B, N, g, mask_first_token, device):
    """keep [B, N]: the padding mask over the sequence with its g global tokens, the first real token (BOS/CLS, which
    global 0 duplicates) masked as a key with mask_first_token."""
    keep = keep_with_globals(attention_mask, B, N, device)
    if mask_first_token and N > g:
        keep = keep.clone()
        keep[:, g] = False
    return keep


def _tokens_so_far(attention_mask, position_ids, cached: int) -> int:
    """How long the sequence is with the new tokens: the padding mask covers every token so far; without one (no
    padding: transformers drops an all-ones mask) the last new token's position says; without either, the cache
    holds every token (a sliding cache, which drops the first ones, always comes with positions)."""
    if attention_mask is not None:
        return attention_mask.shape[-1]
    if position_ids is not None:
        return int(position_ids[0, -1]) + 1
    return cached


def padding_mask_only(batch_size, q_length, kv_length, attention_mask=None, **_):
    return attention_mask


def register() -> None:
    for name, knobs_class in VARIANTS.items():
        if knobs_class.converted:
            AttentionInterface.register(name, attention_forward)
            AttentionMaskInterface.register(name, padding_mask_only)
