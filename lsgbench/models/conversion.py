"""Long-sequence conversion: turn a short-context BERT / RoBERTa / BART / Pegasus into a long model
with a converted attention variant (LSG, local windows, SPADE, ...: `Knobs.converted`).

Conversion (Condevaux & Harispe 2023; the same for every converted variant):
- learned position embeddings are tiled from the pretrained ones up to `max_length`
  (Pegasus' sinusoidal ones are recomputed);
- `global_embeddings` (512 rows, the ccdv checkpoint layout) are added and initialised as the
  LSG paper does: global 0 = position 0 + the BOS/CLS embedding, global j = the position j * stride
  (spread over the pretrained positions) + the MASK embedding;
- the encoder's self-attention, and only it, switches to the variant's kernel through
  transformers' AttentionInterface (attention_interface.py); decoder self- and cross-attention stay.
At run time the g global tokens are prepended to the embedded sequence and removed from the
encoder output (with `pool_with_global` the first global token's output replaces the first real
token's, as in ccdv's models; encoder-decoders keep all of them for the decoder when
`pass_global_tokens_to_decoder`).
The knobs are stored in the model config (`long_attention`, and ccdv's fields for LSG), so a
converted model saved with `save_pretrained` reloads as published ccdv checkpoints do.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import LongKnobs
from ..errors import ConfigError
from . import attention_interface
from .ccdv import write_ccdv_fields
from .layouts import Layout, layout as _layout


def _extend_positions(layout: Layout, model, length: int) -> None:
    """Learned tables: tile the pretrained rows to `length` (reserved rows kept). Sinusoidal: resize."""
    for owner, attr in layout.positions(model):
        if layout.sinusoidal:
            owner.resize_position_embeddings(length)
            continue
        table = getattr(owner, attr)
        reserved, pretrained = table.weight.data[:layout.position_offset], table.weight.data[layout.position_offset:]
        reps = -(-length // pretrained.shape[0])
        tiled = torch.cat([reserved, pretrained.repeat(reps, 1)[:length]], dim=0)
        table.weight = nn.Parameter(tiled, requires_grad=table.weight.requires_grad)
        table.num_embeddings = rows = tiled.shape[0]
        if "position_ids" in owner._buffers:  # BERT/RoBERTa keep id buffers sized like the table
            owner.position_ids = torch.arange(rows, device=tiled.device).expand(1, -1)
        if "token_type_ids" in owner._buffers:
            owner.token_type_ids = torch.zeros(1, rows, dtype=torch.long, device=tiled.device)
    model.config.max_position_embeddings = length + layout.config_offset


POSITIONS = r"(position_embeddings|embed_positions)\."  # the parameters of learned position tables
POSITION_INITS = ("copy", "random")


def extend(model, family: str, knobs: LongKnobs, max_length: int) -> bool:
    """Give a converted (or about to be converted) model positions up to `max_length` by tiling the rows it has;
    True when the table grew. Rotary positions (decoders) have no table: the config's length is raised."""
    layout = _layout(family)
    if layout.rope:
        model.config.max_position_embeddings = max(model.config.max_position_embeddings,
                                                   max_length + knobs.num_global_tokens)
        return False
    owner, attr = layout.positions(model)[0]
    rows = getattr(owner, attr).weight.shape[0] - layout.position_offset
    # Globals prepended to the input embeddings (Pegasus) take positions too.
    needed = max_length + (knobs.num_global_tokens if layout.embed_out is None else 0)
    if needed <= rows:
        return False
    _extend_positions(layout, model, needed)
    return True


def convert(model, family: str, knobs: LongKnobs, max_length: int, bos_token_id: int | None,
            mask_token_id: int | None, position_init: str = "copy"):
    """Turn a loaded short-context model into a long model at `max_length`. `position_init`: `copy` tiles the
    pretrained positions; `random` draws the whole table anew (N(0, initializer_range)), the Longformer paper's
    comparison (its Table 5)."""
    layout = _layout(family)
    if layout.rope and position_init != "copy":
        raise ConfigError(f"model.position_init={position_init}: {family} has rotary positions, no table to draw "
                          f"anew; use copy")
    if layout.decoder_only:
        extend(model, family, knobs, max_length)
        install(model, family, knobs)
        return model
    if bos_token_id is None or mask_token_id is None:
        raise ConfigError("conversion initialises global tokens from the tokenizer's CLS/BOS and MASK tokens; "
                          f"this tokenizer has cls/bos id {bos_token_id} and mask id {mask_token_id}")
    if position_init not in POSITION_INITS:
        raise ConfigError(f"model.position_init={position_init!r} is unknown; choose one of {list(POSITION_INITS)}")
    tables = layout.positions(model)
    old_positions = getattr(*tables[0]).weight.data.clone()[layout.position_offset:] if tables else None
    extend(model, family, knobs, max_length)
    if position_init == "random":
        if layout.sinusoidal:
            raise ConfigError(f"model.position_init=random: {family} positions are sinusoidal, computed rather than "
                              f"learned; use copy")
        for table_owner, table_attr in layout.positions(model):
            table = getattr(table_owner, table_attr).weight.data
            table[layout.position_offset:].normal_(0.0, model.config.initializer_range)
    words = layout.word_embeddings(model).weight.data
    rows = LongKnobs.MAX_GLOBAL_TOKENS
    if layout.embed_out is None or old_positions is None:  # globals join the input embeddings (Pegasus: positions are
        # added later) or there is no position table (rotary): they are words
        scale = layout.encoder(model).embed_scale if layout.embed_out is None else 1.0
        init = (words[mask_token_id] * scale).repeat(rows, 1)
        init[0] = words[bos_token_id] * scale
    else:  # global j = position j * stride (spread over the pretrained positions) + MASK; global 0 = pos 0 + CLS
        n = old_positions.shape[0]
        stride = max(1, n // max(1, knobs.num_global_tokens))
        init = old_positions[torch.arange(rows) * stride % n] + words[mask_token_id]
        init[0] = old_positions[0] + words[bos_token_id]
    globals_ = nn.Embedding(rows, words.shape[1]).to(words.device, words.dtype)
    globals_.weight.data.copy_(init)
    install(model, family, knobs, globals_)
    return model


def install(model, family: str, knobs: LongKnobs, global_embeddings: nn.Embedding | None = None):
    """Attach global embeddings, the variant's attention and the global-token hooks (conversion and loading). A
    decoder-only model runs the variant causally in every layer, its first tokens as the globals (no embeddings)."""
    layout = _layout(family)
    config = model.config
    config.long_attention = knobs.to_dict()
    write_ccdv_fields(config, knobs)
    attention_interface.register()
    if layout.decoder_only:  # all its attention is self-attention: the model's masks come from the variant too
        config._attn_implementation = knobs.name
        if window := knobs.cache_window():  # transformers' KV cache then keeps only the last `window` tokens
            config.sliding_window = window
        attentions = layout.attentions(model)
        for module in attentions:
            module.long_attention = knobs
        knobs.add_modules(attentions, config.hidden_size, config.num_attention_heads, causal=True)
        return model
    layout.global_owner(model).global_embeddings = global_embeddings
    encoder_config = copy.copy(config)
    encoder_config._attn_implementation = knobs.name
    attentions = layout.attentions(model)
    for module in [layout.base(model), *attentions]:
        module.config = encoder_config
    for module in attentions:
        module.long_attention = knobs  # what attention_interface.attention_forward runs
    g = knobs.num_global_tokens

    def with_globals(glob, x):
        return torch.cat([glob.unsqueeze(0).expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)

    def prepend_normalised(norm, args, output):  # the model's embedding dropout follows
        glob = F.layer_norm(global_embeddings.weight[:g], norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        return with_globals(glob, output)

    def prepend_to_inputs(encoder, args, kwargs):
        embeds = kwargs.get("inputs_embeds")
        if embeds is None:
            ids = kwargs.pop("input_ids", None)
            ids = args[0] if ids is None else ids
            embeds = encoder.embed_tokens(ids) * encoder.embed_scale
        kwargs.update(input_ids=None, inputs_embeds=with_globals(global_embeddings.weight[:g], embeds))
        return (), kwargs

    def remove_globals(module, args, output):
        hidden = output.last_hidden_state
        if layout.is_seq2seq and knobs.pass_global_tokens_to_decoder:
            return output
        if knobs.pool_with_global and g:  # global 0's output stands for the first token's (ccdv does so too)
            hidden = torch.cat([hidden[:, :1], hidden[:, g + 1:]], dim=1)
        else:
            hidden = hidden[:, g:]
        output.last_hidden_state = hidden
        return output

    if layout.embed_out is None:
        layout.encoder(model).register_forward_pre_hook(prepend_to_inputs, with_kwargs=True)
    else:
        layout.embed_out(model).register_forward_hook(prepend_normalised)
    layout.encoder(model).register_forward_hook(remove_globals)
    if layout.rope:  # rotary positions are counted from the input: the globals need theirs too
        layout.base(model).register_forward_pre_hook(_positions_with_globals(g), with_kwargs=True)
    if layout.is_seq2seq and knobs.pass_global_tokens_to_decoder:
        model.model.decoder.register_forward_pre_hook(_extend_encoder_mask(g), with_kwargs=True)
    hidden = config.hidden_size if hasattr(config, "hidden_size") else config.d_model
    heads = getattr(config, "num_attention_heads", None) or config.encoder_attention_heads
    knobs.add_modules(attentions, hidden, heads)
    return model


def _positions_with_globals(g: int):
    """position_ids 0 .. g + N - 1 for a model that counts them from its N inputs (ModernBERT)."""
    def hook(module, args, kwargs):
        if kwargs.get("position_ids") is None:
            given = kwargs.get("input_ids", args[0] if args else None)
            given = kwargs.get("inputs_embeds") if given is None else given
            kwargs["position_ids"] = torch.arange(g + given.shape[1], device=given.device).unsqueeze(0)
        return args, kwargs
    return hook


def _extend_encoder_mask(g: int):
    def hook(module, args, kwargs):
        mask, states = kwargs.get("encoder_attention_mask"), kwargs.get("encoder_hidden_states")
        if mask is not None and mask.dim() == 2 and states is not None and mask.shape[1] == states.shape[1] - g:
            kwargs["encoder_attention_mask"] = torch.cat([mask.new_ones(mask.shape[0], g), mask], dim=1)
        return args, kwargs
    return hook
