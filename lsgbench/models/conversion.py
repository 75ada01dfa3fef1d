"""Long-sequence conversion: turn a short-context BERT / RoBERTa / BART / Pegasus into an LSG or a
local-attention model of any length.

Conversion (Condevaux & Harispe 2023; the same for local attention, Xiong et al. 2022):
- learned position embeddings are tiled from the pretrained ones up to `max_length`
  (Pegasus' sinusoidal ones are recomputed);
- `global_embeddings` (512 rows, the ccdv checkpoint layout) are added and initialised as the
  LSG paper does: global 0 = position 0 + the BOS/CLS embedding, global j = the position j * stride
  (spread over the pretrained positions) + the MASK embedding;
- the encoder's self-attention, and only it, switches to the variant's attention function through
  transformers' AttentionInterface ("lsg" or "local"); decoder self- and cross-attention stay.
At run time the g global tokens are prepended to the embedded sequence and removed from the
encoder output (classifiers with `pool_with_global` take the first global token's output as the
first real token's; encoder-decoders keep them for the decoder when `pass_global_tokens_to_decoder`).
The knobs are stored in the model config (`long_attention`, and for LSG also under the ccdv field
names), so a converted model saved with `save_pretrained` reloads as published ccdv checkpoints do.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from omegaconf import OmegaConf
from transformers import AttentionInterface, AttentionMaskInterface

from ..attention.local import check_local_knobs, local_attention
from ..attention.lsg import check_lsg_knobs, lsg_attention
from ..attention.s4d import S4D
from ..errors import ConfigError

log = logging.getLogger(__name__)

GLOBAL_ROWS = 512  # ccdv checkpoints store 512 global embeddings; the first g are used
GLOBAL_KNOBS = ("num_global_tokens", "pool_with_global", "mask_first_token", "pass_global_tokens_to_decoder")


SPADE_KNOBS = ("state_size", "s4d_init", "combine", "combine_weight", "spade_layers", "freeze_ssm")
KNOB_TYPES = {"sparsity_type": str, "mode": str, "s4d_init": str, "combine": str, "combine_weight": float,
              "spade_layers": list, "pool_with_global": bool, "mask_first_token": bool,
              "pass_global_tokens_to_decoder": bool, "freeze_ssm": bool}  # the others are integers
# ccdv LSG configs may lack some fields; these are their defaults.
CCDV_DEFAULTS = {"block_size": 128, "sparse_block_size": 128, "sparsity_factor": 2, "sparsity_type": "norm",
                 "num_global_tokens": 1, "pool_with_global": True, "mask_first_token": False,
                 "pass_global_tokens_to_decoder": True}


@dataclass(frozen=True)
class Variant:
    knobs: tuple[str, ...]  # the variant's own knobs under model.attention (besides GLOBAL_KNOBS)
    check: Callable         # knobs -> None, raising ConfigError
    attend: Callable        # (q, k, v, mask, knobs, scaling, dropout) -> [B, H, N, D]


def _lsg(q, key, v, mask, k, scaling, dropout):
    return lsg_attention(q, key, v, mask, block_size=k["block_size"], sparse_block_size=k["sparse_block_size"],
                         sparsity_factor=k["sparsity_factor"], sparsity_type=k["sparsity_type"],
                         num_global_tokens=k["num_global_tokens"], scaling=scaling, dropout=dropout)


def _local(q, key, v, mask, k, scaling, dropout):
    return local_attention(q, key, v, mask, mode=k["mode"], window=k["window"], block_size=k["block_size"],
                           num_global_tokens=k["num_global_tokens"], scaling=scaling, dropout=dropout)


def _check_lsg(k):
    check_lsg_knobs(k["block_size"], k["sparse_block_size"], k["sparsity_factor"], k["sparsity_type"],
                    k["num_global_tokens"])


def _check_local(k):
    check_local_knobs(k["mode"], k["window"], k["block_size"], k["num_global_tokens"])


def _check_spade(k):
    _check_local(k)
    if k["combine"] not in ("concat", "add"):
        raise ConfigError(f"model.attention.combine={k['combine']!r} is unknown; choose concat or add")
    if not k["spade_layers"] or not all(isinstance(i, int) and i >= 0 for i in k["spade_layers"]):
        raise ConfigError(f"model.attention.spade_layers={k['spade_layers']} must be a non-empty list of layer indices")


LOCAL_KNOBS = ("mode", "window", "block_size")
VARIANTS = {
    "lsg": Variant(("block_size", "sparse_block_size", "sparsity_factor", "sparsity_type"), _check_lsg, _lsg),
    "local": Variant(LOCAL_KNOBS, _check_local, _local),
    "spade": Variant(LOCAL_KNOBS + SPADE_KNOBS, _check_spade, _local),  # local attention + an S4D branch
}


# ----------------------------------------------------------------- transformers plumbing

def _variant_forward(name: str):
    variant = VARIANTS[name]

    def forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **_):
        """AttentionInterface function: [B, H, N, D] in, [B, N, H, D] out. `attention_mask` is the 2D
        padding mask (see `padding_mask_only`), made before the global tokens were prepended."""
        knobs = module.config.long_attention
        B, _, N, _ = query.shape
        g = knobs["num_global_tokens"]
        mask = torch.ones(B, N, dtype=torch.bool, device=query.device) if attention_mask is None \
            else attention_mask.to(torch.bool)
        if mask.shape[-1] < N:  # globals prepended after the mask was made
            mask = torch.cat([mask.new_ones(B, N - mask.shape[-1]), mask], dim=-1)
        if knobs["mask_first_token"] and N > g:
            mask = mask.clone()
            mask[:, g] = False  # the first real token (BOS/CLS) duplicates global 0
        out = variant.attend(query, key, value, mask, knobs, scaling, dropout if module.training else 0.0)
        return out.transpose(1, 2).contiguous(), None

    return forward


def padding_mask_only(batch_size, q_length, kv_length, attention_mask=None, **_):
    """AttentionMaskInterface function: pass the 2D padding mask through; never build N x N."""
    return attention_mask


for _name in VARIANTS:
    AttentionInterface.register(_name, _variant_forward(_name))
    AttentionMaskInterface.register(_name, padding_mask_only)


# ----------------------------------------------------------------- where conversion plugs into a family

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
}
def conversion_knobs(attention_cfg) -> dict:
    """The validated knobs of a converted variant from `model.attention` (type lsg or local)."""
    variant = VARIANTS[attention_cfg.type]
    names = ("type", *variant.knobs, *GLOBAL_KNOBS)
    missing = [k for k in names if k not in attention_cfg]
    if missing:
        raise ConfigError(f"model.attention.type={attention_cfg.type} needs the knobs {missing} under "
                          f"model.attention; start from a {attention_cfg.type}_* model (e.g. model={attention_cfg.type}_roberta)")
    knobs = OmegaConf.to_container(attention_cfg, resolve=True)
    knobs = {k: knobs[k] for k in names}
    for k in names[1:]:
        kind = KNOB_TYPES.get(k, int)
        ok = isinstance(knobs[k], (int, float) if kind is float else kind) and not (
            kind in (int, float) and isinstance(knobs[k], bool))
        if not ok:
            name = {str: "a string", bool: "true or false", int: "an integer", float: "a number", list: "a list"}[kind]
            raise ConfigError(f"model.attention.{k}={knobs[k]!r} must be {name}")
    variant.check(knobs)
    if knobs["num_global_tokens"] > GLOBAL_ROWS:
        raise ConfigError(f"model.attention.num_global_tokens={knobs['num_global_tokens']} exceeds {GLOBAL_ROWS}")
    return knobs


def stored_knobs(config) -> dict | None:
    """The knobs of a saved converted checkpoint (lsgbench's, or a ccdv LSG config); None if it is not one."""
    if getattr(config, "long_attention", None):
        return dict(config.long_attention)
    if getattr(config, "sparsity_type", None) is None:
        return None
    knobs = {"type": "lsg", **{k: getattr(config, k, CCDV_DEFAULTS[k]) for k in CCDV_DEFAULTS}}
    if getattr(config, "adaptive", False):
        log.warning("checkpoint asks for ccdv's adaptive block size; lsgbench keeps block_size=%d fixed "
                    "(inputs of at most 2 blocks get full attention either way)", knobs["block_size"])
    if getattr(config, "lsh_num_pre_rounds", 1) != 1:
        log.warning("checkpoint asks for %d LSH pre-rounds; lsgbench hashes once", config.lsh_num_pre_rounds)
    return knobs


# ----------------------------------------------------------------- conversion

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


def convert(model, family: str, knobs: dict, max_length: int, bos_token_id: int | None, mask_token_id: int | None):
    """Turn a loaded short-context model into a long model at `max_length` (knobs from `conversion_knobs`)."""
    layout = _layout(family)
    if bos_token_id is None or mask_token_id is None:
        raise ConfigError("conversion initialises global tokens from the tokenizer's CLS/BOS and MASK tokens; "
                          f"this tokenizer has cls/bos id {bos_token_id} and mask id {mask_token_id}")
    owner, attr = layout.positions(model)[0]
    old_positions = getattr(owner, attr).weight.data.clone()[layout.position_offset:]
    # Globals prepended to the input embeddings (Pegasus) take positions too.
    needed = max_length + (knobs["num_global_tokens"] if layout.embed_out is None else 0)
    if needed > old_positions.shape[0]:
        _extend_positions(layout, model, needed)
    words = layout.word_embeddings(model).weight.data
    if layout.embed_out is None:  # globals join the input embeddings, which get positions added later
        scale = layout.encoder(model).embed_scale
        init = (words[mask_token_id] * scale).repeat(GLOBAL_ROWS, 1)
        init[0] = words[bos_token_id] * scale
    else:  # global j = position j * stride (spread over the pretrained positions) + MASK; global 0 = pos 0 + CLS
        n = old_positions.shape[0]
        stride = max(1, n // max(1, knobs["num_global_tokens"]))
        init = old_positions[torch.arange(GLOBAL_ROWS) * stride % n] + words[mask_token_id]
        init[0] = old_positions[0] + words[bos_token_id]
    globals_ = nn.Embedding(GLOBAL_ROWS, words.shape[1]).to(words.device, words.dtype)
    globals_.weight.data.copy_(init)
    install(model, family, knobs, globals_)
    return model


def install(model, family: str, knobs: dict, global_embeddings: nn.Embedding):
    """Attach global embeddings, the variant's attention and the global-token hooks (conversion and loading)."""
    layout = _layout(family)
    config = model.config
    config.long_attention = dict(knobs)
    if knobs["type"] == "lsg":  # also the ccdv field names, so ccdv tools read lsgbench checkpoints
        for k in CCDV_DEFAULTS:
            setattr(config, k, knobs[k])
        config.adaptive, config.lsh_num_pre_rounds = False, 1
    layout.global_owner(model).global_embeddings = global_embeddings
    encoder_config = copy.copy(config)
    encoder_config._attn_implementation = knobs["type"]
    for module in [layout.base(model), *layout.attentions(model)]:
        module.config = encoder_config
    g = knobs["num_global_tokens"]

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
        if layout.is_seq2seq and knobs["pass_global_tokens_to_decoder"]:
            return output
        if knobs["pool_with_global"] and not layout.is_seq2seq and g:
            hidden = torch.cat([hidden[:, :1], hidden[:, g + 1:]], dim=1)  # global 0 stands for the first token
        else:
            hidden = hidden[:, g:]
        output.last_hidden_state = hidden
        return output

    if layout.embed_out is None:
        layout.encoder(model).register_forward_pre_hook(prepend_to_inputs, with_kwargs=True)
    else:
        layout.embed_out(model).register_forward_hook(prepend_normalised)
    layout.encoder(model).register_forward_hook(remove_globals)
    if layout.is_seq2seq and knobs["pass_global_tokens_to_decoder"]:
        model.model.decoder.register_forward_pre_hook(_extend_encoder_mask(g), with_kwargs=True)
    if knobs["type"] == "spade":
        attentions = layout.attentions(model)
        for i in knobs["spade_layers"]:
            if i >= len(attentions):
                raise ConfigError(f"model.attention.spade_layers={knobs['spade_layers']}: the encoder has "
                                  f"{len(attentions)} layers")
            attentions[i].spade = SpadeBranch(config.hidden_size if hasattr(config, "hidden_size") else config.d_model,
                                              knobs).to(global_embeddings.weight.device)
            attentions[i].register_forward_hook(_spade_hook, with_kwargs=True)
    return model


class SpadeBranch(nn.Module):
    """SPADE (Zuo et al. 2022): an S4D branch beside an encoder layer's local attention. Both read the
    layer's (normalised) input; each output is layer-normalised, then they are combined."""

    def __init__(self, hidden: int, knobs: dict):
        super().__init__()
        self.s4d = S4D(hidden, knobs["state_size"], knobs["s4d_init"], freeze=knobs["freeze_ssm"])
        self.norm_attention, self.norm_ssm = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.combine, self.weight = knobs["combine"], knobs["combine_weight"]
        self.mix = nn.Linear(2 * hidden, hidden) if self.combine == "concat" else None

    def forward(self, attention_out, hidden_states, keep):
        u = hidden_states * keep.unsqueeze(-1).to(hidden_states.dtype)  # padding must not enter the scan
        a, s = self.norm_attention(attention_out), self.norm_ssm(self.s4d(u))
        return self.mix(torch.cat([a, s], dim=-1)) if self.combine == "concat" else a + self.weight * s


def _spade_hook(module, args, kwargs, output):
    hidden = args[0] if args else kwargs["hidden_states"]
    mask = args[1] if len(args) > 1 else kwargs.get("attention_mask")
    B, N = hidden.shape[:2]
    keep = torch.ones(B, N, dtype=torch.bool, device=hidden.device) if mask is None else mask.to(torch.bool)
    if keep.shape[-1] < N:  # the global tokens are never padding
        keep = torch.cat([keep.new_ones(B, N - keep.shape[-1]), keep], dim=-1)
    return (module.spade(output[0], hidden, keep), *output[1:])


def _extend_encoder_mask(g: int):
    def hook(module, args, kwargs):
        mask, states = kwargs.get("encoder_attention_mask"), kwargs.get("encoder_hidden_states")
        if mask is not None and mask.dim() == 2 and states is not None and mask.shape[1] == states.shape[1] - g:
            kwargs["encoder_attention_mask"] = torch.cat([mask.new_ones(mask.shape[0], g), mask], dim=1)
        return args, kwargs
    return hook


def _layout(family: str) -> Layout:
    if family not in LAYOUTS:
        raise ConfigError(f"long-sequence conversion supports model families {sorted(LAYOUTS)}, not {family!r}")
    return LAYOUTS[family]


ADDED_WEIGHTS = ("global_embeddings.", ".spade.")  # what conversion adds to the base architecture


def checkpoint_tensors(checkpoint_dir: str, wanted) -> dict[str, torch.Tensor]:
    """Tensors of a saved checkpoint (safetensors or .bin files) whose names contain one of `wanted`."""
    from pathlib import Path

    files = sorted(Path(checkpoint_dir).glob("*.safetensors")) or sorted(Path(checkpoint_dir).glob("*.bin"))
    tensors = {}
    for file in files:
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as f:
                tensors.update({k: f.get_tensor(k) for k in f.keys() if any(w in k for w in wanted)})
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
            tensors.update({k: v for k, v in state.items() if any(w in k for w in wanted)})
    return tensors


def load_converted(checkpoint_dir: str, model, family: str, knobs: dict):
    """Install a saved converted model's variant and load the weights conversion added."""
    saved = checkpoint_tensors(checkpoint_dir, ADDED_WEIGHTS)
    glob = next((v for k, v in saved.items() if k.endswith("global_embeddings.weight")), None)
    if glob is None:
        raise ConfigError(f"{checkpoint_dir} has a converted config but no global_embeddings.weight in its weights")
    ref = model.get_input_embeddings().weight
    embedding = nn.Embedding(*glob.shape).to(ref.device, ref.dtype)
    embedding.weight.data.copy_(glob)
    install(model, family, knobs, embedding)
    spade = {k: v for k, v in saved.items() if ".spade." in k}
    if spade:
        missing = [k for k in spade if k not in model.state_dict()]
        if missing:
            raise ConfigError(f"{checkpoint_dir}: SPADE weights {missing[:3]} do not fit the model")
        model.load_state_dict(spade, strict=False)
    return model
