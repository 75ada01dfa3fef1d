"""Hugging Face model families: config classes, heads, size presets and the attention they run.

One `Family` per architecture; `model.family` in conf/model/*.yaml picks it. Families with a
conversion layout (models/layouts.py) also run every converted attention variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import transformers as tf

from .heads import LongT5EncoderForSequenceClassification, PegasusXEncoderForSequenceClassification, masked_choices


# Random-init size presets: (layers, hidden, heads, feed-forward). Encoder-decoders use the
# layer count for both stacks. `base` matches the 12-layer, 768-hidden base checkpoints.
SIZES = {
    "tiny": (2, 64, 2, 128),
    "small": (4, 256, 4, 1024),
    "base": (12, 768, 12, 3072),
}


def _encoder_sizes(layers, hidden, heads, ffn):
    return dict(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads, intermediate_size=ffn)


def _seq2seq_sizes(layers, hidden, heads, ffn):
    return dict(encoder_layers=layers, decoder_layers=layers, d_model=hidden, encoder_attention_heads=heads,
                decoder_attention_heads=heads, encoder_ffn_dim=ffn, decoder_ffn_dim=ffn)


def _t5_sizes(layers, hidden, heads, ffn):
    """T5-style configs (LongT5): the same table, in T5's names; gated-GELU as the LongT5 checkpoints."""
    return dict(num_layers=layers, num_decoder_layers=layers, d_model=hidden, d_ff=ffn, num_heads=heads,
                d_kv=hidden // heads, feed_forward_proj="gated-gelu")


def _decoder_sizes(layers, hidden, heads, ffn):
    """Decoder-only (Llama-architecture) configs: grouped-query attention with half as many K/V heads (the
    Llama-3 and Mistral checkpoints group theirs too)."""
    return dict(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                num_key_value_heads=max(1, heads // 2), head_dim=hidden // heads, intermediate_size=ffn)


def _gemma_sizes(layers, hidden, heads, ffn):
    """Gemma scales queries by query_pre_attn_scalar ** -0.5 (its checkpoints: the head dim)."""
    return {**_decoder_sizes(layers, hidden, heads, ffn), "query_pre_attn_scalar": hidden // heads}


def _present(**heads: str) -> dict[str, type]:
    """Heads by class name, those this transformers has (recent ones may be missing from an older install, e.g. the
    GPU machine's): multiple-choice classes get MaskedChoices."""
    found = {kind: getattr(tf, name, None) for kind, name in heads.items()}
    return {kind: masked_choices(cls) if kind == "multiple_choice" else cls for kind, cls in found.items() if cls}


@dataclass(frozen=True)
class Family:
    config_class: type
    heads: dict[str, type]            # task kind -> the model class with that kind's head (a kind absent: none);
                                      # the first is the family's main head (the benchmark's, the converter's default)
    sizes: Callable                   # (layers, hidden, heads, ffn) -> config kwargs
    position_field: str | None = "max_position_embeddings"  # None: no position table, any input length
    position_offset: int = 0          # RoBERTa-style embeddings reserve padding_idx + 1 positions
    attention_types: tuple = ("full",)  # its own; families with a conversion layout add the converted variants
    global_attention: bool = False    # Longformer/LED take a global_attention_mask (the task kind says where)
    fixed_padding: bool = False       # BigBird: pad every batch to max_length (see models.build)
    attn_implementation: str = "sdpa"
    pretrained_positions: int = 512   # positions of the base checkpoints (random init of converted models)
    decoder_starts_with_pad: bool = False  # T5 / PEGASUS-X: the decoder starts from the pad token (random init)
    rope: bool = False                # rotary positions: no table, any length (max_position_embeddings says what it
                                      # trained at); a longer input extrapolates
    decoder_only: bool = False        # causal self-attention only (Llama, Mistral, Gemma): right padding; classifies
                                      # from the last token, as transformers' *ForSequenceClassification

    @property
    def encoder_decoder(self) -> bool:
        return bool(self.config_class().is_encoder_decoder)

    def num_layers(self, config) -> int:
        return getattr(config, "num_hidden_layers", None) or config.encoder_layers

    def capacity(self, config) -> int | None:
        """The longest input a checkpoint takes; None: no limit (no absolute position table)."""
        if self.position_field is None or self.rope:
            return None
        return getattr(config, self.position_field) - self.position_offset


FAMILIES = {
    "bert": Family(tf.BertConfig, {"classification": tf.BertForSequenceClassification,
                                   "question_answering": tf.BertForQuestionAnswering,
                                   "multiple_choice": masked_choices(tf.BertForMultipleChoice),
                                   "masked_lm": tf.BertForMaskedLM}, _encoder_sizes),
    "roberta": Family(tf.RobertaConfig, {"classification": tf.RobertaForSequenceClassification,
                                         "question_answering": tf.RobertaForQuestionAnswering,
                                         "multiple_choice": masked_choices(tf.RobertaForMultipleChoice),
                                         "masked_lm": tf.RobertaForMaskedLM},
                      _encoder_sizes,
                      position_offset=2),
    "bart": Family(tf.BartConfig, {"summarization": tf.BartForConditionalGeneration,
                                   "classification": tf.BartForSequenceClassification,
                                   "question_answering": tf.BartForQuestionAnswering},
                   _seq2seq_sizes, pretrained_positions=1024),
    "pegasus": Family(tf.PegasusConfig, {"summarization": tf.PegasusForConditionalGeneration}, _seq2seq_sizes,
                      pretrained_positions=1024),
    "longformer": Family(tf.LongformerConfig, {"classification": tf.LongformerForSequenceClassification,
                                               "question_answering": tf.LongformerForQuestionAnswering,
                                               "multiple_choice": masked_choices(tf.LongformerForMultipleChoice),
                                               "masked_lm": tf.LongformerForMaskedLM},
                         _encoder_sizes, position_offset=2, attention_types=("longformer",),
                         global_attention=True, attn_implementation="eager"),
    "led": Family(tf.LEDConfig, {"summarization": tf.LEDForConditionalGeneration,
                                 "question_answering": tf.LEDForQuestionAnswering}, _seq2seq_sizes,
                  position_field="max_encoder_position_embeddings",
                  attention_types=("longformer",), global_attention=True, attn_implementation="eager"),
    "bigbird": Family(tf.BigBirdConfig, {"classification": tf.BigBirdForSequenceClassification,
                                         "question_answering": tf.BigBirdForQuestionAnswering,
                                         "multiple_choice": masked_choices(tf.BigBirdForMultipleChoice),
                                         "masked_lm": tf.BigBirdForMaskedLM},
                      _encoder_sizes,
                      attention_types=("bigbird",), fixed_padding=True,
                      attn_implementation="eager"),
    "bigbird_pegasus": Family(tf.BigBirdPegasusConfig, {"summarization": tf.BigBirdPegasusForConditionalGeneration,
                                                       "question_answering": tf.BigBirdPegasusForQuestionAnswering},
                              _seq2seq_sizes, attention_types=("bigbird",),
                              fixed_padding=True, attn_implementation="eager"),
    # LongT5 (Guo et al. 2022): relative position buckets, no absolute position table; local or transient-global
    # encoder attention (model files longt5_local, longt5_tglobal). transformers has no classification head for it
    # nor for PEGASUS-X: lsgbench's (models/heads.py) classifies from the encoder's first token.
    "longt5": Family(tf.LongT5Config, {"summarization": tf.LongT5ForConditionalGeneration,
                                       "classification": LongT5EncoderForSequenceClassification},
                     _t5_sizes, position_field=None,
                     attention_types=("longt5",), attn_implementation="eager", decoder_starts_with_pad=True),
    # PEGASUS-X (Phang et al. 2022): staggered block-local attention with global tokens; its sinusoidal positions
    # are computed for any length (max_position_embeddings is stored, never enforced).
    "pegasus_x": Family(tf.PegasusXConfig, {"summarization": tf.PegasusXForConditionalGeneration,
                                            "classification": PegasusXEncoderForSequenceClassification},
                        _seq2seq_sizes, position_field=None, attention_types=("pegasus_x",),
                        attn_implementation="eager", decoder_starts_with_pad=True),
    # ModernBERT (Warner et al. 2024): an encoder with rotary positions, alternating sliding-window and global layers
    # (attention=modernbert); also a backbone the converted variants take (models/layouts.py).
    "modernbert": Family(tf.ModernBertConfig, _present(classification="ModernBertForSequenceClassification",
                                                       question_answering="ModernBertForQuestionAnswering",
                                                       multiple_choice="ModernBertForMultipleChoice",
                                                       masked_lm="ModernBertForMaskedLM"),
                         _encoder_sizes, attention_types=("modernbert",), rope=True, pretrained_positions=8192),
    # Decoder-only, rotary positions. Llama-architecture is the backbone lsgbench's causal variants convert
    # (models/layouts.py); Mistral and Gemma run their own windows (attention=mistral, gemma).
    "llama": Family(tf.LlamaConfig, {"causal_lm": tf.LlamaForCausalLM,
                                     "classification": tf.LlamaForSequenceClassification},
                    _decoder_sizes, rope=True, decoder_only=True, pretrained_positions=8192),
    "mistral": Family(tf.MistralConfig, {"causal_lm": tf.MistralForCausalLM,
                                         "classification": tf.MistralForSequenceClassification},
                      _decoder_sizes, attention_types=("mistral",), rope=True, decoder_only=True),
    # Gemma-2 caps attention logits (attn_logit_softcapping), which transformers computes in eager only.
    "gemma2": Family(tf.Gemma2Config, {"causal_lm": tf.Gemma2ForCausalLM,
                                       "classification": tf.Gemma2ForSequenceClassification},
                     _gemma_sizes, attention_types=("gemma",), rope=True, decoder_only=True,
                     attn_implementation="eager"),
    "gemma3": Family(tf.Gemma3TextConfig, _present(causal_lm="Gemma3ForCausalLM",
                                                   classification="Gemma3TextForSequenceClassification"),
                     _gemma_sizes, attention_types=("gemma",), rope=True, decoder_only=True),
}
