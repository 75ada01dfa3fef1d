"""Where long-sequence conversion plugs into each backbone family: which modules hold the position
tables, the word embeddings, the encoder self-attention, and where global tokens are prepended; for
decoder-only backbones, only which modules are the self-attention."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import ConfigError


@dataclass(frozen=True)
class Layout:
    base: Callable              # model -> the module that builds the encoder mask (BertModel, BartEncoder)
    encoder: Callable           # model -> module whose output carries the globals
    attentions: Callable        # model -> encoder self-attention modules
    word_embeddings: Callable
    global_owner: Callable      # model -> module that holds `global_embeddings` (the ccdv layout)
    embed_out: Callable | None  # model -> module after whose output the globals are prepended (normalised
                                # like it); None: they are prepended to the input embeddings (Pegasus)
    positions: Callable         # model -> [(owner, attribute)] position tables (learned ones are tiled)
    position_offset: int        # rows reserved before position 0 (RoBERTa/BART: 2)
    config_offset: int          # of those, counted in config.max_position_embeddings (RoBERTa: 2, BART: 0)
    is_seq2seq: bool
    sinusoidal: bool = False    # Pegasus: positions are computed, so extending is a resize
    rope: bool = False          # ModernBERT: rotary positions, no table; the globals take positions 0..g-1
    decoder_only: bool = False


@dataclass(frozen=True)
class DecoderLayout:
    """A decoder-only backbone with rotary positions: every self-attention layer converts and runs causally. No
    position table (the length is only raised in the config) and no learned global tokens: the first
    num_global_tokens tokens of the input are the globals, attention sinks (Xiao et al. 2023) every query sees."""
    attentions: Callable        # model -> its self-attention modules
    is_seq2seq: bool = False
    rope: bool = True
    decoder_only: bool = True


def _bert_like(prefix: str, offset: int) -> Layout:
    base = lambda m: getattr(m, prefix)  # noqa: E731
    return Layout(
        base=base,
        encoder=lambda m: base(m).encoder,
        attentions=lambda m: [layer.attention.self for layer in base(m).encoder.layer],
        word_embeddings=lambda m: base(m).embeddings.word_embeddings,
        global_owner=lambda m: base(m).embeddings,
        embed_out=lambda m: base(m).embeddings.LayerNorm,
        positions=lambda m: [(base(m).embeddings, "position_embeddings")],
        position_offset=offset,
        config_offset=offset,
        is_seq2seq=False,
    )


def _seq2seq(embed_out, position_offset: int, sinusoidal: bool) -> Layout:
    return Layout(
        base=lambda m: m.model.encoder,
        encoder=lambda m: m.model.encoder,
        attentions=lambda m: [layer.self_attn for layer in m.model.encoder.layers],
        word_embeddings=lambda m: m.model.shared,
        global_owner=lambda m: m.model.encoder,
        embed_out=embed_out,
        positions=lambda m: [(m.model.encoder, "embed_positions"), (m.model.decoder, "embed_positions")],
        position_offset=position_offset,
        config_offset=0,
        is_seq2seq=True,
        sinusoidal=sinusoidal,
    )


LAYOUTS = {
    "bert": _bert_like("bert", 0),
    "roberta": _bert_like("roberta", 2),
    "bart": _seq2seq(lambda m: m.model.encoder.layernorm_embedding, 2, sinusoidal=False),
    "pegasus": _seq2seq(None, 0, sinusoidal=True),
    "modernbert": Layout(
        base=lambda m: m.model,
        encoder=lambda m: m.model,
        attentions=lambda m: [layer.attn for layer in m.model.layers],
        word_embeddings=lambda m: m.model.embeddings.tok_embeddings,
        global_owner=lambda m: m.model.embeddings,
        embed_out=lambda m: m.model.embeddings.norm,
        positions=lambda m: [],
        position_offset=0,
        config_offset=0,
        is_seq2seq=False,
        rope=True,
    ),
    "llama": DecoderLayout(attentions=lambda m: [layer.self_attn for layer in m.model.layers]),
}


def layout(family: str) -> Layout | DecoderLayout:
    if family not in LAYOUTS:
        raise ConfigError(f"long-sequence conversion supports model families {sorted(LAYOUTS)}, not {family!r}")
    return LAYOUTS[family]
