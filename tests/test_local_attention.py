"""Local-window attention: the fast path equals the dense-mask reference (Xiong et al. 2022 patterns)."""

import itertools

import pytest
import torch

from lsgbench.attention import local_attention, local_attention_reference
from lsgbench.attention.local import LocalKnobs
from lsgbench.attention import blocks
from lsgbench.errors import ConfigError

from helpers import (assert_kernel_matches_reference, assert_recompute_replays_dropout, count_input_sized_tensors,
                     full_attention, inputs)


@pytest.mark.parametrize("mode, g, padded, size", list(itertools.product(["sliding", "disjoint"], [0, 2], [True, False],
                                                                          [6, 16])))
def test_fast_path_matches_reference_forward_and_backward(pieces, mode, g, padded, size):
    q, k, v, mask = inputs(N=61, pad=(0, 11))
    knobs = LocalKnobs.make(mode=mode, window=size, block_size=size, num_global_tokens=g)
    assert_kernel_matches_reference(knobs, q, k, v, mask if padded else None)


def test_float32_matches_reference():
    q, k, v, mask = (t.float() if t.is_floating_point() else t for t in inputs(N=300, pad=(40, 0)))
    for mode in ("sliding", "disjoint"):
        knobs = dict(mode=mode, window=64, block_size=48, num_global_tokens=1)
        torch.testing.assert_close(local_attention(q, k, v, mask, **knobs),
                                   local_attention_reference(q, k, v, mask, **knobs), atol=1e-5, rtol=1e-5)


def test_sliding_window_by_hand():
    q, k, v, _ = inputs(B=1, H=1, N=40)
    out = local_attention(q, k, v, None, mode="sliding", window=8, block_size=0, num_global_tokens=0)
    i = 20  # sees 16..24
    expected = full_attention(q[:, :, i:i + 1], k[:, :, 16:25], v[:, :, 16:25], torch.ones(1, 9))
    torch.testing.assert_close(out[:, :, i:i + 1], expected)
    out = local_attention(q, k, v, None, mode="disjoint", window=0, block_size=8, num_global_tokens=1)
    i = 20  # non-global position 19 is in block 2 = positions 17..24, plus the global token 0
    keys = [0] + list(range(17, 25))
    torch.testing.assert_close(out[:, :, i:i + 1], full_attention(q[:, :, i:i + 1], k[:, :, keys], v[:, :, keys],
                                                                  torch.ones(1, 9)))


def test_window_covering_everything_is_full_attention():
    q, k, v, mask = inputs(N=30, pad=(4, 0))
    torch.testing.assert_close(local_attention(q, k, v, mask, mode="sliding", window=60, block_size=0,
                                                   num_global_tokens=0), full_attention(q, k, v, mask))


@pytest.mark.parametrize("knobs, message", [(dict(mode="strided"), "mode='strided'"), (dict(window=1), "window=1"),
                                            (dict(mode="disjoint", block_size=0), "block_size=0"),
                                            (dict(num_global_tokens=-2), "num_global_tokens=-2")])
def test_bad_knobs_are_rejected_once_when_built(knobs, message):
    with pytest.raises(ConfigError, match=message):
        LocalKnobs.make(**knobs)


def test_a_knob_unused_in_its_mode_is_not_in_the_label():
    assert LocalKnobs.make(mode="sliding", window=64).label() == "local sliding w=64 g=0"
    assert LocalKnobs.make(mode="disjoint", block_size=32, num_global_tokens=1).label() == "local disjoint b=32 g=1"


@pytest.mark.parametrize("mode, g", [("sliding", 0), ("sliding", 2), ("disjoint", 1), ("disjoint", 0)])
def test_recomputed_backward_replays_dropout(monkeypatch, mode, g):
    q, k, v, mask = inputs(N=61, pad=(0, 11))
    knobs = dict(mode=mode, window=8, block_size=8, num_global_tokens=g)
    assert_recompute_replays_dropout(local_attention, q, k, v, mask, knobs, monkeypatch)


def test_no_grad_and_inference_mode_give_the_training_forward(monkeypatch):
    monkeypatch.setattr(blocks, "PIECE_SCORES", 1)
    q, k, v, mask = inputs(N=61, pad=(0, 11))
    knobs = dict(mode="sliding", window=8, block_size=0, num_global_tokens=1)
    expected = local_attention(q.requires_grad_(), k, v, mask, **knobs)
    with torch.inference_mode():
        torch.testing.assert_close(local_attention(q, k, v, mask, **knobs), expected)


@pytest.mark.parametrize("mode, g", list(itertools.product(["sliding", "disjoint"], [0, 1])))
def test_training_makes_no_copy_of_the_keys(monkeypatch, mode, g):
    """Forward and backward make the output and three gradients, nothing else the size of K."""
    monkeypatch.setattr(blocks, "PIECE_SCORES", 2**12)  # pieces of one block, far smaller than K
    q, k, v = (torch.randn(2, 2, 1025, 16) for _ in range(3))
    knobs = LocalKnobs.make(mode=mode, window=64, block_size=32, num_global_tokens=g)
    assert count_input_sized_tensors(lambda *qkv: knobs.attend(*qkv, None, None, 0.0), q, k, v) == 4
