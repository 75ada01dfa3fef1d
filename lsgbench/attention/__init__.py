"""Attention functions over [B, H, N, D] tensors, each with a naive reference beside it."""

from .lsg import SPARSITY_TYPES, lsg_attention
from .reference import lsg_attention_reference

__all__ = ["SPARSITY_TYPES", "lsg_attention", "lsg_attention_reference"]
