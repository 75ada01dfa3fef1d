"""Attention variants: one module each, holding a typed knobs class (defaults in
conf/attention/<name>.yaml, one check at build time, a label), its kernel and its dense reference.

`VARIANTS` maps `model.attention.type` to the knobs class. Converted variants (`converted = True`)
run lsgbench's kernels inside a short-context backbone (see lsgbench/models/conversion.py); the
others are a backbone's own attention (full) or a peer model's (Longformer, BigBird).
Adding a variant: a module here, a line below, conf/attention/<name>.yaml, a test.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import ConfigError
from .dilated import DilatedKnobs
from .full import FullKnobs
from .knobs import Knobs, LongKnobs
from .local import LocalKnobs, local_attention, local_attention_reference
from .lsg import SPARSITY_TYPES, LsgKnobs, lsg_attention, lsg_attention_reference
from .peers import (BigBirdKnobs, GemmaKnobs, LongformerKnobs, LongT5Knobs, MistralKnobs, ModernBertKnobs,
                    PegasusXKnobs)
from .spade import SpadeKnobs

VARIANTS: dict[str, type[Knobs]] = {k.name: k for k in (
    FullKnobs, LsgKnobs, LocalKnobs, SpadeKnobs, LongformerKnobs, BigBirdKnobs, DilatedKnobs, LongT5Knobs,
    PegasusXKnobs, MistralKnobs, GemmaKnobs, ModernBertKnobs,
)}


CONVERTED = tuple(name for name, knobs in VARIANTS.items() if knobs.converted)


def variant(name: str) -> type[Knobs]:
    if name not in VARIANTS:
        raise ConfigError(f"model.attention.type={name!r} is unknown; choose one of {sorted(VARIANTS)} "
                          f"(attention=<name> on the command line)")
    return VARIANTS[name]


def knobs_from_config(attention: Mapping) -> Knobs:
    """The validated knobs of a `model.attention` mapping."""
    return variant(attention.get("type")).from_config(attention)


def attention_label(attention: Mapping) -> str:
    """A short, stable description of recorded attention knobs, e.g. `lsg b=64 s=64 f=4 pooling g=1`."""
    if not attention:
        return "?"
    kind = attention.get("type", "?")
    label = VARIANTS[kind].label_of(attention) if kind in VARIANTS else str(kind)
    return label + (" (full-attention fallback)" if attention.get("runs_full_attention") else "")


def kernel_caveat(record: Mapping) -> str | None:
    """Why a run's speed and memory are not what its attention kernel measures today (it ran before the
    kernel's last change that alters them, `KERNEL_CHANGED`), or None."""
    kind = (record.get("attention") or {}).get("type")
    changed = VARIANTS[kind].KERNEL_CHANGED if kind in VARIANTS else None
    if changed and record["run_id"][:len(changed)] < changed:
        return (f"measured before lsgbench's {kind} kernel changed on {changed[:4]}-{changed[4:6]}-{changed[6:8]}: "
                f"its speed and memory are not the current kernel's (a rerun remeasures them)")
    return None


def labelled_knobs(attention: Mapping) -> dict:
    """The knobs of recorded attention that tell settings apart (those its label shows)."""
    kind = attention.get("type")
    names = VARIANTS[kind].labelled(attention) if kind in VARIANTS else ()
    return {k: attention[k] for k in names if k in attention}


__all__ = ["CONVERTED", "VARIANTS", "SPARSITY_TYPES", "Knobs", "LongKnobs", "attention_label", "kernel_caveat",
           "knobs_from_config",
           "labelled_knobs", "local_attention", "local_attention_reference", "lsg_attention",
           "lsg_attention_reference", "variant"]
