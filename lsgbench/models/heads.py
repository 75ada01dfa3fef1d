"""Classification heads for the encoder-decoders transformers gives none (LongT5, PEGASUS-X), and
multiple-choice heads that take examples with different numbers of options (MaskedChoices).

The encoder alone reads the document; its first token's state goes through RoBERTa's head (dense,
tanh, linear, with dropout). No decoder runs, and mean pooling is deliberately not used: as in an
encoder-only classifier, everything the prediction uses must reach the first token (lsgbench's own
tokenizers start with <s>; the published T5/PEGASUS ones with the first word) through the encoder's
attention, so a model's receptive field shows in its accuracy (results/receptive_field).
Pretrained checkpoints of the generation model load into it: the encoder and shared embedding keep
their names (PEGASUS-X's `model.` prefix is its base_model_prefix, which transformers strips), the
decoder's weights are ignored and the head starts at random.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import MultipleChoiceModelOutput, SequenceClassifierOutput
from transformers.models.longt5.modeling_longt5 import LongT5PreTrainedModel, LongT5Stack
from transformers.models.pegasus_x.modeling_pegasus_x import (PegasusXEncoder, PegasusXPreTrainedModel,
                                                              PegasusXScaledWordEmbedding)


class FirstTokenHead(nn.Module):
    def __init__(self, hidden: int, num_labels: int, dropout: float):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden, num_labels)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        x = self.dropout(states[:, 0])
        return self.out_proj(self.dropout(torch.tanh(self.dense(x))))


class EncoderClassifier:
    """What both heads share: the checkpoint layout of their generation models, the head's
    initialisation (std 0.02, as RoBERTa's) and the forward pass."""
    _tied_weights_keys = {"encoder.embed_tokens.weight": "shared.weight"}
    _keys_to_ignore_on_load_unexpected = [r"decoder", r"lm_head"]

    def _init_weights(self, module):
        if isinstance(module, nn.Linear) and any(module is m for m in self.classifier.modules()):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        else:
            super()._init_weights(module)

    def get_input_embeddings(self):
        return self.shared

    def set_input_embeddings(self, embeddings):
        self.shared = self.encoder.embed_tokens = embeddings

    def forward(self, input_ids=None, attention_mask=None, labels=None, inputs_embeds=None):
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              inputs_embeds=inputs_embeds).last_hidden_state
        logits = self.classifier(states)
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


class LongT5EncoderForSequenceClassification(EncoderClassifier, LongT5PreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        encoder_config = copy.deepcopy(config)
        encoder_config.is_decoder, encoder_config.use_cache = False, False
        self.encoder = LongT5Stack(encoder_config)
        self.encoder.embed_tokens = self.shared
        self.classifier = FirstTokenHead(config.d_model, config.num_labels, config.dropout_rate)
        self.post_init()


class PegasusXEncoderForSequenceClassification(EncoderClassifier, PegasusXPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        scale = config.d_model ** 0.5 if config.scale_embedding else 1.0
        self.shared = PegasusXScaledWordEmbedding(config.vocab_size, config.d_model, config.pad_token_id, scale)
        self.encoder = PegasusXEncoder(config)
        self.encoder.embed_tokens = self.shared
        self.classifier = FirstTokenHead(config.d_model, config.num_labels, config.dropout)
        self.post_init()


class MaskedChoices:
    """Mixed into a transformers *ForMultipleChoice model: examples with fewer options than the batch's most
    are padded with placeholder options, whose logits `option_mask` (1: a real option) masks out of the
    scores and the loss."""

    def forward(self, *args, option_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None, **kwargs):
        out = super().forward(*args, **kwargs)
        logits = out.logits
        if option_mask is not None:
            logits = logits.masked_fill(option_mask == 0, torch.finfo(logits.dtype).min)
        return MultipleChoiceModelOutput(loss=F.cross_entropy(logits, labels) if labels is not None else None,
                                         logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)


def masked_choices(model_class: type) -> type:
    """`model_class` (a *ForMultipleChoice) with MaskedChoices; it loads checkpoints as the original does."""
    return type(model_class.__name__, (MaskedChoices, model_class), {"__module__": __name__})
