"""The peers' own attention, run by their Hugging Face implementations (the encoders' eager only in transformers 5):
Longformer / LED sliding windows with global attention on the first token (Beltagy et al. 2020),
BigBird / BigBird-Pegasus block-sparse attention (Zaheer et al. 2020), LongT5 local and
transient-global attention (Guo et al. 2022) and PEGASUS-X staggered block-local attention with
global tokens (Phang et al. 2022), ModernBERT's alternating sliding and global layers (Warner et al. 2024);
for decoders, Mistral's sliding window and Gemma-2/3's interleaved sliding and global layers. lsgbench sets their config fields; the kernels are transformers'.

`CHECKPOINT_FIXED`: knobs a pretrained checkpoint fixes (they change its weights); asking for another
value is an error rather than silently new random weights. `full_attention_at(n)`: True when, at n
tokens, every query's window already holds the whole input (recorded as `runs_full_attention`)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from .knobs import Knobs


@dataclasses.dataclass(frozen=True)
class LongformerKnobs(Knobs):
    name: ClassVar[str] = "longformer"
    LABELLED: ClassVar = ("attention_window",)
    SHORT: ClassVar = {"attention_window": "w"}
    attention_window: int  # total window width; a query sees attention_window // 2 tokens on each side

    def check(self) -> None:
        if self.attention_window <= 0 or self.attention_window % 2:
            raise self.bad("attention_window", "must be a positive even number")

    def hf_config(self, num_layers: int) -> dict:
        return {"attention_window": [self.attention_window] * num_layers}


@dataclasses.dataclass(frozen=True)
class BigBirdKnobs(Knobs):
    name: ClassVar[str] = "bigbird"
    LABELLED: ClassVar = ("block_size", "num_random_blocks")
    SHORT: ClassVar = {"block_size": "b", "num_random_blocks": "r"}
    block_size: int
    num_random_blocks: int

    def check(self) -> None:
        self.check_at_least(block_size=1, num_random_blocks=0)

    def full_attention_at(self, length: int) -> bool:
        # transformers' BigBird runs full attention up to (5 + 2 * num_random_blocks) * block_size tokens
        return length <= (5 + 2 * self.num_random_blocks) * self.block_size

    def hf_config(self, num_layers: int) -> dict:
        return {"attention_type": "block_sparse", "block_size": self.block_size,
                "num_random_blocks": self.num_random_blocks}


LONGT5_TYPES = ("local", "transient-global")


@dataclasses.dataclass(frozen=True)
class LongT5Knobs(Knobs):
    name: ClassVar[str] = "longt5"
    LABELLED: ClassVar = ("encoder_attention_type", "local_radius", "global_block_size")
    SHORT: ClassVar = {"local_radius": "r", "global_block_size": "gb"}
    CHECKPOINT_FIXED: ClassVar = ("encoder_attention_type",)  # transient-global adds weights a local checkpoint lacks
    encoder_attention_type: str  # local | transient-global
    local_radius: int            # a query sees local_radius tokens on each side
    global_block_size: int       # transient-global: one global token summarises each block of this many tokens

    @classmethod
    def labelled(cls, attention) -> tuple[str, ...]:
        if attention.get("encoder_attention_type") == "local":
            return ("encoder_attention_type", "local_radius")
        return cls.LABELLED

    def check(self) -> None:
        if self.encoder_attention_type not in LONGT5_TYPES:
            raise self.bad("encoder_attention_type", f"is unknown; choose one of {list(LONGT5_TYPES)}")
        self.check_at_least(local_radius=1, global_block_size=1)

    def hf_config(self, num_layers: int) -> dict:
        return {"encoder_attention_type": self.encoder_attention_type, "local_radius": self.local_radius,
                "global_block_size": self.global_block_size}

    def full_attention_at(self, length: int) -> bool:
        # transformers splits the input into blocks of local_radius + 1 and lets a query see |i - j| <= local_radius
        return length <= self.local_radius + 1


@dataclasses.dataclass(frozen=True)
class PegasusXKnobs(Knobs):
    name: ClassVar[str] = "pegasus_x"
    LABELLED: ClassVar = ("block_size", "num_global_tokens", "stagger_local_blocks")
    SHORT: ClassVar = {"block_size": "b", "num_global_tokens": "g", "stagger_local_blocks": "stagger"}
    CHECKPOINT_FIXED: ClassVar = ("num_global_tokens",)  # the global-token embedding table is a weight
    block_size: int              # local attention within blocks of this many tokens (input padded to a multiple)
    num_global_tokens: int       # learned global tokens, a separate stream every token attends to
    stagger_local_blocks: bool   # every other layer shifts its blocks by half a block

    def check(self) -> None:
        self.check_at_least(block_size=1)
        if self.stagger_local_blocks and self.block_size % 2:
            raise self.bad("block_size", "must be even when stagger_local_blocks is true (blocks shift by half)")
        self.check_at_least(num_global_tokens=1)

    def hf_config(self, num_layers: int) -> dict:
        return {"block_size": self.block_size, "num_global_tokens": self.num_global_tokens,
                "stagger_local_blocks": self.stagger_local_blocks}

    def full_attention_at(self, length: int) -> bool:
        # the input is padded to a block multiple; a staggered layer pads half a block on each side first
        return length <= (self.block_size // 2 if self.stagger_local_blocks else self.block_size)


# ------------------------------------------------------------------ decoder-only peers (causal)

@dataclasses.dataclass(frozen=True)
class MistralKnobs(Knobs):
    """Mistral's sliding window (Jiang et al. 2023), transformers' implementation: in every layer a query sees the
    `sliding_window` tokens that end at itself. lsgbench's causal `local` sliding window w sees w // 2 tokens
    before the query and itself: Mistral's W equals local's window = 2 (W - 1)."""
    name: ClassVar[str] = "mistral"
    LABELLED: ClassVar = ("sliding_window",)
    SHORT: ClassVar = {"sliding_window": "W"}
    sliding_window: int

    def check(self) -> None:
        self.check_at_least(sliding_window=1)

    def hf_config(self, num_layers: int) -> dict:
        return {"sliding_window": self.sliding_window}

    def full_attention_at(self, length: int) -> bool:
        return length <= self.sliding_window


@dataclasses.dataclass(frozen=True)
class GemmaKnobs(Knobs):
    """Gemma-2 / Gemma-3's interleaved layers (Gemma Team 2024, 2025), transformers' implementation: every
    `global_every`-th layer attends to all earlier tokens, the others to a Mistral-style `sliding_window`
    (Gemma-2: 1 global in 2 layers, window 4,096; Gemma-3: 1 in 6, window 1,024 or 512)."""
    name: ClassVar[str] = "gemma"
    LABELLED: ClassVar = ("sliding_window", "global_every")
    SHORT: ClassVar = {"sliding_window": "W", "global_every": "global every"}
    sliding_window: int
    global_every: int

    def check(self) -> None:
        self.check_at_least(sliding_window=1, global_every=1)

    def hf_config(self, num_layers: int) -> dict:
        return {"sliding_window": self.sliding_window,
                "layer_types": ["full_attention" if (i + 1) % self.global_every == 0 else "sliding_attention"
                                for i in range(num_layers)]}

    def full_attention_at(self, length: int) -> bool:
        return length <= self.sliding_window


@dataclasses.dataclass(frozen=True)
class ModernBertKnobs(Knobs):
    """ModernBERT's alternating attention (Warner et al. 2024), transformers' implementation: every
    `global_every`-th layer, from the first, attends to the whole input; the others to a sliding `window` (a
    query sees window // 2 tokens on each side). The checkpoints: window 128, a global layer every third."""
    name: ClassVar[str] = "modernbert"
    LABELLED: ClassVar = ("window", "global_every")
    SHORT: ClassVar = {"window": "w", "global_every": "global every"}
    window: int
    global_every: int

    def check(self) -> None:
        self.check_at_least(window=2, global_every=1)

    def hf_config(self, num_layers: int) -> dict:
        return {"local_attention": self.window, "global_attn_every_n_layers": self.global_every,
                "layer_types": ["full_attention" if i % self.global_every == 0 else "sliding_attention"
                                for i in range(num_layers)]}

    def full_attention_at(self, length: int) -> bool:
        return length <= self.window // 2 + 1
