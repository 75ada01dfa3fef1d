"""Local-window attention (Xiong et al. 2022, "Simple Local Attentions Remain Competitive").

Shapes: B batch, H heads, N tokens, D head dim; g global tokens lead the sequence.
- mode="sliding": a non-global query at i sees non-global keys j with |i - j| <= w = window // 2.
  Computed over blocks of w queries: block i's keys are blocks i-1, i, i+1 (3w keys) under a
  band mask, so memory is O(N * (g + 3w)).
- mode="disjoint": non-global positions form blocks of b = block_size; a query sees its own block.
Global tokens attend to every key and every query attends to them. Padding never gets weight.
`local_attention_reference` in reference.py builds the same pattern as a dense mask (the oracle).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .lsg import global_query_attention, neighbour_blocks, split_and_pad

MODES = ("sliding", "disjoint")


def check_local_knobs(mode, window, block_size, num_global_tokens):
    prefix = "model.attention."
    if mode not in MODES:
        raise ConfigError(f"{prefix}mode={mode!r} is unknown; choose one of {list(MODES)}")
    if mode == "sliding" and window < 2:
        raise ConfigError(f"{prefix}window={window} must be >= 2 (a query sees window // 2 tokens on each side)")
    if mode == "disjoint" and block_size < 1:
        raise ConfigError(f"{prefix}block_size={block_size} must be >= 1")
    if num_global_tokens < 0:
        raise ConfigError(f"{prefix}num_global_tokens={num_global_tokens} must be >= 0")


def local_attention(query, key, value, attention_mask=None, *, mode="sliding", window=256, block_size=256,
                    num_global_tokens=0, scaling=None, dropout=0.0):
    """Local attention over [B, H, N, D]; attention_mask [B, N] with 1 = keep, 0 = padding."""
    check_local_knobs(mode, window, block_size, num_global_tokens)
    B, H, N, D = query.shape
    g = min(num_global_tokens, N)
    scaling = D ** -0.5 if scaling is None else scaling
    b = window // 2 if mode == "sliding" else block_size
    keep, qx, kx, vx, keep_x = split_and_pad(query, key, value, attention_mask, g, b)
    Np = qx.shape[2]
    nb = Np // b

    outputs = [global_query_attention(query, key, value, keep, g, scaling, dropout)] if g else []
    if Np == 0:
        return torch.cat(outputs, dim=2)

    if mode == "sliding":  # blocks i-1, i, i+1 under the band |i - j| <= w
        def blocks(x, fill):
            return neighbour_blocks(x, b, fill)
        offset = torch.arange(3 * b, device=query.device)[None, :] - b - torch.arange(b, device=query.device)[:, None]
        band = offset.abs() <= b                                   # [b, 3b]: key j - query i
    else:
        def blocks(x, fill):  # [B, ..., Np, *] -> [B, ..., nb, b, *]
            dim = 2 if x.dim() == 4 else 1
            return x.unflatten(dim, (nb, b))
        band = torch.ones(b, b, dtype=torch.bool, device=query.device)

    keys, values = blocks(kx, 0.0), blocks(vx, 0.0)                 # [B, H, nb, K, D]
    mask = blocks(keep_x, False)[:, :, None, :] & band              # [B, nb, b, K]
    if g:
        keys = torch.cat([key[:, :, None, :g].expand(B, H, nb, g, D), keys], dim=3)
        values = torch.cat([value[:, :, None, :g].expand(B, H, nb, g, D), values], dim=3)
        mask = torch.cat([keep[:, None, None, :g].expand(B, nb, b, g), mask], dim=3)
    K = keys.shape[3]
    # Heads move next to the query axis so that the [B * nb, 1, b, K] mask broadcasts over them.
    to_blocks = lambda x, n: x.transpose(1, 2).reshape(B * nb, H, n, D)  # noqa: E731
    out = F.scaled_dot_product_attention(to_blocks(qx.view(B, H, nb, b, D), b), to_blocks(keys, K),
                                         to_blocks(values, K), attn_mask=mask.reshape(B * nb, 1, b, K),
                                         dropout_p=dropout, scale=scaling)
    out = out.masked_fill(~mask.any(-1).reshape(B * nb, 1, b, 1), 0.0)
    outputs.append(out.view(B, nb, H, b, D).transpose(1, 2).reshape(B, H, Np, D)[:, :, : N - g])
    return torch.cat(outputs, dim=2)
