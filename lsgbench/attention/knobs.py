"""Typed attention knobs: the base class every variant's knobs extend.

A variant's knobs class is a frozen dataclass. `from_config` checks the names and types of a
`model.attention` mapping against its fields and then calls `check()` once, at build time, so a
kernel never validates per call. Defaults live in one place, `conf/attention/<name>.yaml`
(`defaults()` reads it). `label()` is the short description tables and plots use.
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from collections.abc import Mapping
from typing import ClassVar

import torch
from omegaconf import DictConfig, OmegaConf

from ..config import shipped_dir
from ..errors import ConfigError
from .blocks import keep_mask, masked_attention

_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


@dataclasses.dataclass(frozen=True)
class Knobs:
    name: ClassVar[str]
    converted: ClassVar[bool] = False     # True: lsgbench's own kernel replaces a backbone's encoder attention
    LABELLED: ClassVar[tuple[str, ...]] = ()  # knobs shown in labels, in this order
    CHECKPOINT_FIXED: ClassVar[tuple[str, ...]] = ()  # knobs a pretrained checkpoint's weights fix
    SHORT: ClassVar[dict[str, str]] = {}  # knob -> its abbreviation in labels (absent: the value alone)
    # When (UTC, as run ids write it) a change to lsgbench's kernel of this variant last altered the speed or
    # memory it measures: the report marks runs measured before it, and the store does not reuse them.
    KERNEL_CHANGED: ClassVar[str | None] = None

    # ------------------------------------------------------------------ building and checking
    @classmethod
    def defaults(cls) -> dict:
        """The variant's defaults: conf/attention/<name>.yaml (with the files its defaults list names)."""
        return _attention_yaml(cls.name)

    @classmethod
    def make(cls, **overrides) -> "Knobs":
        """The defaults with some knobs changed (tests, the convert CLI, the benchmark)."""
        return cls.from_config({**cls.defaults(), **overrides})

    @classmethod
    def from_config(cls, attention: Mapping) -> "Knobs":
        values = OmegaConf.to_container(attention, resolve=True) if isinstance(attention, DictConfig) else dict(attention)
        values.pop("type", None)
        hints = typing.get_type_hints(cls)
        names = cls.knob_names()
        if unknown := sorted(set(values) - set(names)):
            raise ConfigError(f"{cls.name} attention has no knob {unknown[0]!r}; its knobs are {names} (to change the "
                              f"variant, use attention=<name>)")
        if missing := [n for n in names if n not in values]:
            raise ConfigError(f"{cls.name} attention needs the knobs {missing} (defaults: conf/attention/{cls.name}.yaml)")
        knobs = cls(**{n: _typed(cls.name, n, values[n], hints[n]) for n in names})
        knobs.check()
        return knobs

    @classmethod
    def knob_names(cls) -> list[str]:
        """The knobs, the variant's own first and the shared ones (global tokens) after them."""
        fields = {f.name for f in dataclasses.fields(cls)}
        own_first = [n for klass in cls.__mro__ for n in getattr(klass, "__annotations__", {}) if n in fields]
        return list(dict.fromkeys(own_first))

    def check(self) -> None:
        """Raise ConfigError (via `self.bad`) for values the kernel cannot run."""

    def bad(self, knob: str, why: str) -> ConfigError:
        return ConfigError(f"{self.name} attention: {knob}={getattr(self, knob)!r} {why}")

    def check_at_least(self, **minimums: int) -> None:
        """ConfigError for the first of these knobs below its minimum."""
        for knob, minimum in minimums.items():
            if getattr(self, knob) < minimum:
                raise self.bad(knob, f"must be >= {minimum}")

    def full_attention_at(self, length: int) -> bool:
        """True when, at `length` tokens, every query already sees the whole input (recorded as
        `runs_full_attention`, and warned about)."""
        return False

    def hf_config(self, num_layers: int) -> dict:
        """transformers config fields this attention sets (the peers' own attention); none by default."""
        return {}

    @property
    def hf_implementation(self) -> str | None:
        """transformers' attn_implementation this attention asks for; None: the family's own."""
        return None

    def to_dict(self) -> dict:
        """What configs and records hold: {"type": name, knob: value, ...} (lists, not tuples)."""
        values = {k: getattr(self, k) for k in self.knob_names()}
        return {"type": self.name, **{k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}}

    # ------------------------------------------------------------------ describing
    @classmethod
    def labelled(cls, attention: Mapping) -> tuple[str, ...]:
        """The knobs that matter for this setting (some matter only in some modes)."""
        return cls.LABELLED

    @classmethod
    def label_of(cls, attention: Mapping) -> str:
        parts = [cls.name]
        for knob in cls.labelled(attention):
            if knob in attention:
                value = attention[knob]
                value = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
                parts.append(f"{cls.SHORT[knob]}={value}" if knob in cls.SHORT else str(value))
        return " ".join(parts)

    def label(self) -> str:
        return self.label_of(self.to_dict())


def _attention_yaml(name: str) -> dict:
    values = OmegaConf.to_container(OmegaConf.load(shipped_dir("conf") / "attention" / f"{name}.yaml"))
    merged = {}
    for base in values.pop("defaults", []):
        if base != "_self_":
            merged.update(_attention_yaml(base))
    return {**merged, **values}


def _typed(variant: str, knob: str, value, kind):
    """`value` as the annotated type, or a ConfigError naming the knob."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):  # X | None: null, or an X
        if value is None:
            return None
        (inner,) = [k for k in typing.get_args(kind) if k is not type(None)]
        try:
            return _typed(variant, knob, value, inner)
        except ConfigError as err:
            raise ConfigError(f"{err} or null") from None
    if origin is tuple:  # tuple[int, ...]: a list of integers in the config, or one integer
        if _is(value, int):
            return (value,)
        if isinstance(value, (list, tuple)) and value and all(_is(v, int) for v in value):
            return tuple(value)
        raise ConfigError(f"{variant} attention: {knob}={value!r} must be a non-empty list of integers")
    if _is(value, kind):
        return float(value) if kind is float else value
    raise ConfigError(f"{variant} attention: {knob}={value!r} must be {_TYPE_WORDS[kind]}")


def _is(value, kind) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


@dataclasses.dataclass(frozen=True)
class LongKnobs(Knobs):
    """Knobs every converted variant shares: learned global tokens prepended to the sequence."""

    converted: ClassVar[bool] = True
    num_global_tokens: int
    dropout: float | None                # attention dropout in training; None: the backbone's own
    pool_with_global: bool               # classifiers read global token 0 in place of the first token
    mask_first_token: bool               # the first real token (which global 0 duplicates) is masked as a key
    pass_global_tokens_to_decoder: bool  # encoder-decoders: the decoder cross-attends to the globals too

    MAX_GLOBAL_TOKENS: ClassVar[int] = 512  # ccdv checkpoints store 512 global embeddings
    ADDED_WEIGHTS: ClassVar[tuple[str, ...]] = (r"global_embeddings\.",)  # what conversion adds (patterns)

    def check(self) -> None:
        if not 0 <= self.num_global_tokens <= self.MAX_GLOBAL_TOKENS:
            raise self.bad("num_global_tokens", f"must be in [0, {self.MAX_GLOBAL_TOKENS}]")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise self.bad("dropout", "must be in [0, 1), or null for the backbone's own attention dropout")

    def attend(self, query, key, value, keep, scaling: float, dropout: float, causal: bool = False):
        """The kernel: [B, H, N, D] (g globals first) and keep [B, N] bool or None -> [B, H, N, D]; causal: restricted
        to keys at or before the query (decoders). key and value have H heads, or fewer when `grouped_kv`."""
        raise NotImplementedError

    def grouped_kv(self, query, dropout: float) -> bool:
        """Whether this call's kernel takes grouped K/V heads (fewer than the query's) as they are, instead of
        repeated to every query head."""
        return False

    def reference(self, query, key, value, keep, scaling: float, causal: bool = False):
        """The dense-mask oracle of `attend` (small N only)."""
        raise NotImplementedError

    def pattern(self, queries, keys, heads: int):
        """Which keys the queries at positions `queries` [Q] may see among those at `keys` [K], before causality and
        padding: bool [1 or heads, Q, K]. The dense reference is this pattern over every position; generation with
        a KV cache (`attend_cached`) reads it for the new queries."""
        raise NotImplementedError(f"{self.name} attention cannot generate with a KV cache")

    def attend_cached(self, query, key, value, keep, scaling, start: int):
        """Causal attention of Q new queries over K cached keys, as in generation: the keys are positions
        start .. start + K - 1 (start > 0: a sliding cache dropped the first ones), the queries the last Q of them;
        keep [B, K] or None. Exact, and dense over the keys the queries can reach (`visible_cache`): decoding a token
        costs O(reach) for a variant with a reach, O(K) as full attention's for the others."""
        key, value, keep, positions, _ = self.visible_cache(query, key, value, keep, start)
        return masked_attention(query, key, value, self.cached_pattern(query, positions, keep),
                                query.shape[-1] ** -0.5 if scaling is None else scaling)

    def cached_pattern(self, query, positions, keep):
        """`attend_cached`'s mask [B, 1 or H, Q, K]: the pattern of the new queries (the last Q of `positions`) over
        the keys at `positions` [K], causal, padded keys (keep [B, K] False) left out."""
        queries = positions[-query.shape[2]:]
        allowed = self.pattern(queries, positions, query.shape[1]) & (positions[None, :] <= queries[:, None])
        return allowed[None] & keep[:, None, None, :]

    def reach(self) -> int | None:
        """How far back a causal query's keys go, the globals aside: a query at q sees none before q - reach.
        None: it may see the whole past."""
        return None

    def earliest_key(self, position: int) -> int:
        """The first key (the globals aside) a causal query at `position` may see; at least position - reach."""
        return position - self.reach()

    def visible_cache(self, query, key, value, keep, start: int):
        """The cached keys the Q new queries can see: (keys, values, keep [B, K'], positions [K'], the position of the
        first non-global one). They are the globals and every key from the first query's earliest key on; all K keys
        for a variant without a reach. (A sliding cache, start > 0, holds no globals: only variants without them
        have one.)"""
        (Q, K), g = (query.shape[2], key.shape[2]), min(self.num_global_tokens, key.shape[2])
        keep, positions = keep_mask(key, keep), torch.arange(start, start + K, device=key.device)
        first = g if self.reach() is None else max(self.earliest_key(start + K - Q), g) - start
        if first < 0:
            raise RuntimeError(f"{self.name} attention: the KV cache starts at position {start}, after the key at "
                               f"{first + start} that its queries see: config.sliding_window must be at least "
                               f"cache_window() = {self.cache_window()}")
        if first <= g or g == K:  # nothing out of reach (or a prompt of globals alone)
            return key, value, keep, positions, start + g
        if g:  # the globals, then the keys within reach
            index = torch.cat([torch.arange(g), torch.arange(first, K)]).to(key.device)
            return key[:, :, index], value[:, :, index], keep[:, index], positions[index], start + first
        return key[:, :, first:], value[:, :, first:], keep[:, first:], positions[first:], start + first

    def cache_window(self) -> int | None:
        """The sliding window a KV cache may keep instead of the whole past (transformers' sliding layers keep the
        last window - 1 keys and attend with the new ones): reach + 1 for a variant with a reach and no global
        tokens (globals would have to stay in the cache too). None: it keeps every past token."""
        reach = self.reach()
        return reach + 1 if reach is not None and not self.num_global_tokens else None

    def for_decoder(self) -> "LongKnobs":
        """The knobs a decoder-only model runs: its globals are its own first tokens (models/layouts.py), so there is
        no global embedding to pool with, no duplicated first token to mask and no decoder to pass them to."""
        return dataclasses.replace(self, pool_with_global=False, mask_first_token=False,
                                   pass_global_tokens_to_decoder=False)

    def add_modules(self, attention_modules: list, hidden_size: int, num_heads: int, causal: bool = False) -> None:
        """Check the knobs against the model and attach modules the variant adds to its attention layers
        (SPADE's S4D branch; causal in a decoder); nothing by default."""


# How lsgbench's own LSG and local kernels run (the `backend` knob): `blocks`, the memory-lean block
# kernels (any device, dropout, backward everywhere); `flex`, FlexAttention with a block mask built from
# the layout (attention/flex.py); `auto`, flex where it is fast and complete, blocks elsewhere.
BACKENDS = ("auto", "blocks", "flex")


def check_backend(knobs) -> None:
    if knobs.backend not in BACKENDS:
        raise knobs.bad("backend", f"is unknown; choose one of {list(BACKENDS)}")


def with_backend(labelled: tuple[str, ...], attention: Mapping) -> tuple[str, ...]:
    """Labels name the backend only when it was chosen (not auto)."""
    return labelled + (("backend",) if attention.get("backend", "auto") != "auto" else ())


def runs_flex(knobs, query, dropout: float) -> bool:
    """Whether this call runs FlexAttention. auto: on CUDA without attention dropout (FlexAttention has
    no dropout, and its CPU build has no backward). flex: always, and attention dropout is an error.
    The backend that ran is noted (`ran`): records and benchmark rows name it."""
    if knobs.backend == "flex" and dropout > 0:
        raise ConfigError(f"{knobs.name} attention: backend=flex cannot apply attention dropout ({dropout}) in "
                          f"training; set model.attention.dropout=0, or use backend=auto (blocks while dropout is "
                          f"on) or blocks")
    flex = knobs.backend == "flex" or (knobs.backend == "auto" and query.is_cuda and dropout == 0)
    if knobs.backend == "auto" and query.is_cuda and dropout > 0 and not _warned:
        _warn_blocks_for_dropout(knobs, dropout)
    ran.add(("flex" if flex else "blocks", dropout))
    return flex


# The (backend, attention dropout) pairs lsgbench's kernels ran with since `backends_ran` last read them.
ran: set[tuple[str, float]] = set()
_warned = False


def backends_ran() -> dict | None:
    """What lsgbench's kernels ran on since the last call: {"backend": "flex" | "blocks" | "blocks, flex",
    "dropout": the largest attention dropout}, or None when none ran (another attention); then forgets it."""
    if not ran:
        return None
    seen = sorted(ran)
    ran.clear()
    return {"backend": ", ".join(sorted({b for b, _ in seen})), "dropout": max(d for _, d in seen)}


def _warn_blocks_for_dropout(knobs, dropout: float) -> None:
    global _warned
    _warned = True
    logging.getLogger(__name__).warning(
        "%s attention trains on the blocks kernel on this GPU, which is slower there than FlexAttention (more "
        "launches, no fused kernel): attention dropout is %g and FlexAttention has none (backend=auto). To train on "
        "flex, set model.attention.dropout=0; to keep the dropout and silence this, set model.attention.backend=blocks",
        knobs.name, dropout)
