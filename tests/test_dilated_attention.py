"""Dilated sliding-window attention (Longformer, Beltagy et al. 2020): the kernel equals the dense-mask
reference, sees the keys it should, and runs inside a converted model."""

import itertools

import pytest
import torch

from lsgbench.attention import attention_label
from lsgbench.attention.dilated import DilatedKnobs, dilated_attention, dilated_attention_reference
from lsgbench.attention.local import local_attention
from lsgbench.errors import ConfigError
from lsgbench.models import build_model

from helpers import TEXTS, assert_kernel_matches_reference, full_attention, inputs


@pytest.mark.parametrize("dilation, g, padded, window", list(itertools.product(
    [[1], [2], [1, 2, 3, 4]], [0, 2], [True, False], [6, 200])))
def test_kernel_matches_reference_forward_and_backward(dilation, g, padded, window):
    q, k, v, mask = inputs(H=4, N=61, pad=(0, 11))
    knobs = DilatedKnobs.make(window=window, dilation=dilation, num_global_tokens=g)
    assert_kernel_matches_reference(knobs, q, k, v, mask if padded else None)


@pytest.mark.parametrize("dilation", [[5], [3, 70, 1, 9]])
def test_large_dilations_and_odd_windows_match_reference(dilation):
    q, k, v, mask = inputs(H=4, N=47, pad=(5, 0))
    for window in (2, 7, 16):
        knobs = DilatedKnobs.make(window=window, dilation=dilation, num_global_tokens=1)
        assert_kernel_matches_reference(knobs, q, k, v, mask)


def test_float32_matches_reference():
    q, k, v, mask = (t.float() if t.is_floating_point() else t for t in inputs(N=300, pad=(40, 0)))
    knobs = dict(window=32, dilation=[1, 2, 4, 8], num_global_tokens=1)
    torch.testing.assert_close(dilated_attention(q, k, v, mask, **knobs),
                               dilated_attention_reference(q, k, v, mask, **knobs), atol=1e-5, rtol=1e-5)


def test_dilated_window_by_hand():
    q, k, v, _ = inputs(B=1, H=2, N=40)
    out = dilated_attention(q, k, v, None, window=6, dilation=[1, 3], num_global_tokens=1)

    def seen(head, i, keys):
        expected = full_attention(q[:, head:head + 1, i:i + 1], k[:, head:head + 1, keys], v[:, head:head + 1, keys],
                                  torch.ones(1, len(keys)))
        torch.testing.assert_close(out[:, head:head + 1, i:i + 1], expected)

    seen(0, 20, [0, 17, 18, 19, 20, 21, 22, 23])  # w = 3 on each side, spacing 1, and global token 0
    seen(1, 20, [0, 11, 14, 17, 20, 23, 26, 29])  # spacing 3
    seen(1, 4, [0, 1, 4, 7, 10, 13])              # 4 - 3 = 1 is the first non-global key; -2, -5 do not exist
    seen(1, 38, [0, 29, 32, 35, 38])              # 41, 44, 47 are past the end
    # a global query sees every key
    torch.testing.assert_close(out[:, :, :1], full_attention(q[:, :, :1], k, v, torch.ones(1, 40)))


def test_padding_gets_no_weight_and_a_query_without_keys_outputs_zeros():
    q, k, v, mask = inputs(B=1, H=1, N=20, pad=(12,))  # positions 8..19 are padding
    out = dilated_attention(q, k, v, mask, window=4, dilation=[5], num_global_tokens=0)
    torch.testing.assert_close(out[:, :, 3], v[:, :, 3])   # keys 3 and 8 (padding): only itself
    torch.testing.assert_close(out[:, :, 13], v[:, :, 3])  # keys 3, 8, 13, 18: only 3 is a token
    assert out[:, :, 19].abs().sum() == 0                  # keys 9, 14, 19: all padding
    assert out[:, :, 10].abs().sum() > 0                   # keys 0, 5 are tokens


@pytest.mark.parametrize("window, g", [(8, 0), (31, 2), (200, 1)])
def test_dilation_one_is_local_sliding_attention(window, g):
    q, k, v, mask = inputs(N=70, pad=(0, 13))
    torch.testing.assert_close(dilated_attention(q, k, v, mask, window=window, dilation=[1], num_global_tokens=g),
                               local_attention(q, k, v, mask, mode="sliding", window=window, block_size=0,
                                               num_global_tokens=g))


@pytest.mark.parametrize("knobs, message", [(dict(window=1), "window=1"), (dict(dilation=[1, 0]), r"dilation=\(1, 0\)"),
                                            (dict(dilation=[-2]), r"dilation=\(-2,\)"),
                                            (dict(dilation=[]), "dilation=.*non-empty list of integers"),
                                            (dict(num_global_tokens=-1), "num_global_tokens=-1")])
def test_bad_knobs_are_rejected_once_when_built(knobs, message):
    with pytest.raises(ConfigError, match=message):
        DilatedKnobs.make(**knobs)


def test_wrong_number_of_per_head_dilations_fails_at_run_time():
    knobs = DilatedKnobs.make(window=8, dilation=[1, 2, 4])  # fine until the head count is known
    q, k, v, mask = inputs(H=4, N=20)
    with pytest.raises(ConfigError, match=r"dilation=\[1, 2, 4\] has 3 values, but the model has 4 attention heads"):
        knobs.attend(q, k, v, mask, None, 0.0)


def test_label():
    assert DilatedKnobs.make().label() == "dilated w=512 d=1 g=0"
    knobs = DilatedKnobs.make(window=64, dilation=[1, 1, 2, 2], num_global_tokens=1)
    assert knobs.label() == attention_label(knobs.to_dict()) == "dilated w=64 d=1,1,2,2 g=1"


def test_long_forward_and_backward_of_a_tiny_converted_model(make_cfg):
    cfg = make_cfg("model=roberta", "attention=dilated", "task=synth_keys", "model.init=random", "model.size=tiny",
                   "model.max_length=1024", "model.attention.window=32", "model.attention.dilation=[1,2]")
    built = build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir)
    assert attention_label(built.attention) == "dilated w=32 d=1,2 g=0"
    assert built.attention["dilation"] == [1, 2]
    m = built.model.train()
    ids = torch.randint(5, 200, (2, 1000))
    mask = torch.ones_like(ids)
    mask[1, 900:] = 0
    out = m(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1]))
    out.loss.backward()
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.loss)
    grad = m.get_input_embeddings().weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
