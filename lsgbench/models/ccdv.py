"""ccdv's published `lsg-*` checkpoints: the LSG knobs as top-level config fields. lsgbench reads
them natively (no remote code) and writes them for its own LSG models, so ccdv's tools read those."""

from __future__ import annotations

import logging

from ..attention import LongKnobs, knobs_from_config, variant
from ..attention.lsg import LsgKnobs

log = logging.getLogger(__name__)

# ccdv LSG configs may lack some fields; these are ccdv's defaults for them.
CCDV_DEFAULTS = {"block_size": 128, "sparse_block_size": 128, "sparsity_factor": 2, "sparsity_type": "norm",
                 "num_global_tokens": 1, "pool_with_global": True, "mask_first_token": False,
                 "pass_global_tokens_to_decoder": True}


def stored_knobs(config) -> LongKnobs | None:
    """The knobs of a saved converted checkpoint (lsgbench's, or a ccdv LSG config); None if it is not one."""
    if getattr(config, "long_attention", None):  # knobs added since it was saved take their defaults
        stored = dict(config.long_attention)
        return knobs_from_config({**variant(stored.get("type")).defaults(), **stored})
    if getattr(config, "sparsity_type", None) is None:
        return None
    if getattr(config, "lsh_num_pre_rounds", 1) != 1:
        log.warning("checkpoint asks for %d LSH pre-rounds; lsgbench hashes once", config.lsh_num_pre_rounds)
    return LsgKnobs.make(**{k: getattr(config, k, default) for k, default in CCDV_DEFAULTS.items()})


def write_ccdv_fields(config, knobs: LongKnobs) -> None:
    """LSG knobs also under ccdv's field names. ccdv's `adaptive` pads inputs to whole blocks, which
    lsgbench always does, so it is written as true."""
    if isinstance(knobs, LsgKnobs):
        for k in CCDV_DEFAULTS:
            setattr(config, k, getattr(knobs, k))
        config.adaptive, config.lsh_num_pre_rounds = True, 1
