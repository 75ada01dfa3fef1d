"""The peers' own attention, run by their Hugging Face implementations (eager only in transformers 5):
Longformer / LED sliding windows with global attention on the first token (Beltagy et al. 2020),
and BigBird / BigBird-Pegasus block-sparse attention (Zaheer et al. 2020). lsgbench sets their
config fields; the kernels are transformers'."""

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
        if self.block_size < 1:
            raise self.bad("block_size", "must be >= 1")
        if self.num_random_blocks < 0:
            raise self.bad("num_random_blocks", "must be >= 0")

    def hf_config(self, num_layers: int) -> dict:
        return {"attention_type": "block_sparse", "block_size": self.block_size,
                "num_random_blocks": self.num_random_blocks}
