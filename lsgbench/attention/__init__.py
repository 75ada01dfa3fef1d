"""Attention functions over [B, H, N, D] tensors, each with a naive reference beside it."""

from .local import local_attention
from .lsg import SPARSITY_TYPES, lsg_attention
from .reference import local_attention_reference, lsg_attention_reference

__all__ = ["SPARSITY_TYPES", "local_attention", "local_attention_reference", "lsg_attention",
           "lsg_attention_reference"]
