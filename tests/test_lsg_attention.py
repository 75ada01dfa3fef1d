"""LSG attention: the fast path equals the dense-mask reference; the sparse reductions do what they say."""

import itertools

import pytest
import torch

from lsgbench.attention import SPARSITY_TYPES, lsg_attention, lsg_attention_reference
from lsgbench.attention.lsg import LsgKnobs, sparse_keys
from lsgbench.attention import blocks
from lsgbench.errors import ConfigError

from helpers import (assert_kernel_matches_reference, assert_recompute_replays_dropout, count_input_sized_tensors,
                     full_attention, inputs)


CASES = list(itertools.product(SPARSITY_TYPES, [0, 1, 3], [True, False]))


@pytest.mark.parametrize("sparsity_type, g, padded", CASES)
def test_fast_path_matches_reference_forward_and_backward(pieces, sparsity_type, g, padded):
    q, k, v, mask = inputs()
    knobs = LsgKnobs.make(block_size=8, sparse_block_size=4, sparsity_factor=2, sparsity_type=sparsity_type,
                          num_global_tokens=g)
    assert_kernel_matches_reference(knobs, q, k, v, mask if padded else None)


@pytest.mark.parametrize("b, s, f, N", [(4, 8, 4, 70), (16, 16, 2, 100), (8, 8, 1, 41), (6, 3, 3, 37)])
def test_fast_path_matches_reference_in_float32_across_shapes(b, s, f, N):
    q, k, v, mask = (t.float() if t.is_floating_point() else t for t in inputs(N=N, pad=(5, 0)))
    for sparsity_type in ("pooling", "stride", "block_stride", "bos_pooling") + (("norm", "lsh") if b % min(b, s) == 0 and min(b, s) % f == 0 else ()):
        knobs = dict(block_size=b, sparse_block_size=s, sparsity_factor=f, sparsity_type=sparsity_type, num_global_tokens=2)
        torch.testing.assert_close(lsg_attention(q, k, v, mask, **knobs), lsg_attention_reference(q, k, v, mask, **knobs),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("sparsity_type", SPARSITY_TYPES)
def test_short_inputs_get_full_attention(sparsity_type):
    q, k, v, mask = inputs(N=2 + 16, pad=(3, 0))  # N - g <= 2b
    out = lsg_attention(q, k, v, mask, block_size=8, sparse_block_size=4, sparsity_factor=2,
                        sparsity_type=sparsity_type, num_global_tokens=2)
    torch.testing.assert_close(out, full_attention(q, k, v, mask))


def test_stride_with_factor_one_widens_the_local_window():
    # f = 1 keeps every token: sparse keys are the s tokens on each side of the 3-block window.
    q, k, v, mask = inputs(B=1, N=64, pad=(0,), H=1)
    b, s = 8, 4
    out = lsg_attention(q, k, v, None, block_size=b, sparse_block_size=s, sparsity_factor=1, sparsity_type="stride",
                        num_global_tokens=0)
    i = 3  # block 3: local keys 16..39, sparse keys 12..15 and 40..43
    keys = list(range(12, 44))
    expected = full_attention(q[:, :, i * b:(i + 1) * b], k[:, :, keys], v[:, :, keys], torch.ones(1, len(keys)))
    torch.testing.assert_close(out[:, :, i * b:(i + 1) * b], expected)


def test_sparse_reductions_by_hand():
    B, H, Np, D, f, b = 1, 2, 8, 1, 2, 4
    kx = torch.arange(Np, dtype=torch.float64).view(1, 1, Np, 1).expand(B, H, Np, D).clone()
    vx = kx * 10
    keep = torch.tensor([[True] * 7 + [False]])
    common = dict(sparsity_factor=f, block_size=b, sparse_block_size=4, query_first=None, scaling=1.0)
    ks, vs, kept = sparse_keys(kx, vx, keep, sparsity_type="pooling", **common)
    assert ks[0, 0, :, 0].tolist() == [0.5, 2.5, 4.5, 6.0]  # the last group averages only its kept token
    assert vs[0, 1, :, 0].tolist() == [5.0, 25.0, 45.0, 60.0] and kept.tolist() == [[[True] * 4]]
    ks, _, kept = sparse_keys(kx, vx, keep, sparsity_type="stride", **common)
    assert ks[0, :, :, 0].tolist() == [[0, 2, 4, 6], [1, 3, 5, 7]]  # head h keeps j*f + h % f
    assert kept[0].tolist() == [[True] * 4, [True, True, True, False]]
    ks, _, _ = sparse_keys(kx, vx, keep, sparsity_type="block_stride", **common)
    assert ks[0, :, :, 0].tolist() == [[0, 1, 4, 5], [2, 3, 6, 7]]  # head h keeps slice h of each block
    signed = torch.tensor([3.0, -5.0, 1.0, 0.5, -0.1, 2.0, 9.0, 8.0], dtype=torch.float64).view(1, 1, 8, 1).expand(1, 2, 8, 1)
    ks, _, kept = sparse_keys(signed, signed, keep, sparsity_type="norm", **common)
    assert ks[0, 0, :, 0].tolist() == [3.0, -5.0, 2.0, 9.0]  # the 2 largest |k| of each chunk of 4, in order
    q = torch.tensor([1.0], dtype=torch.float64).view(1, 1, 1).expand(1, 2, 1)
    ks, _, _ = sparse_keys(kx, vx, keep, sparsity_type="bos_pooling", **{**common, "query_first": q})
    w = torch.tensor([0.0, 1.0]).softmax(0)
    assert ks[0, 0, 0, 0].item() == pytest.approx(float(w[1]))  # softmax(q.k) weights over {0, 1}
    assert ks[0, 0, 3, 0].item() == pytest.approx(6.0)  # padding gets no weight


def test_lsh_averages_the_keys_of_each_bucket():
    from lsgbench.attention.lsg import LSH_SEED

    H, Np, D, c, buckets = 2, 16, 4, 8, 4
    kx = torch.randn(1, H, Np, D, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    keep = torch.ones(1, Np, dtype=torch.bool)
    keep[0, -1] = False
    ks, vs, kept = sparse_keys(kx, 2 * kx, keep, sparsity_type="lsh", sparsity_factor=2, block_size=8,
                               sparse_block_size=8, query_first=None, scaling=1.0)
    planes = torch.randn(H, D, buckets, generator=torch.Generator().manual_seed(LSH_SEED)).double()
    for h in range(H):
        for chunk in range(Np // c):
            members = {}
            for t in range(chunk * c, (chunk + 1) * c):
                if keep[0, t]:
                    members.setdefault(int((kx[0, h, t] @ planes[h]).argmax()), []).append(kx[0, h, t])
            for bucket in range(buckets):
                j = chunk * buckets + bucket
                assert bool(kept[0, h, j]) == (bucket in members)
                if bucket in members:
                    torch.testing.assert_close(ks[0, h, j], torch.stack(members[bucket]).mean(0))
                    torch.testing.assert_close(vs[0, h, j], 2 * ks[0, h, j])


def test_long_inputs_are_not_full_attention():
    q, k, v, mask = inputs(N=80, pad=(0, 0))
    out = lsg_attention(q, k, v, mask, block_size=8, sparse_block_size=4, sparsity_factor=2, sparsity_type="pooling",
                        num_global_tokens=1)
    assert (out - full_attention(q, k, v, mask)).abs().max() > 1e-3


@pytest.mark.parametrize("knobs, message", [
    (dict(sparsity_type="random"), "sparsity_type='random' is unknown"),
    (dict(block_size=6, sparsity_factor=4), "block_size=6 must be divisible by sparsity_factor=4"),
    (dict(num_global_tokens=-1), "num_global_tokens=-1"),
    (dict(sparsity_type="norm", block_size=8, sparse_block_size=6, sparsity_factor=2), "chunks of"),
    (dict(block_size="8"), "block_size='8' must be an integer"),
    (dict(blok_size=8), "lsg attention has no knob 'blok_size'"),
])
def test_bad_knobs_are_rejected_once_when_built(knobs, message):
    with pytest.raises(ConfigError, match=message):
        LsgKnobs.make(**{**dict(block_size=8, sparse_block_size=4, sparsity_factor=2), **knobs})


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_selects_the_same_tokens_as_float64(dtype):
    """Selection scores run in float32, so bf16/fp16 LSG stays within a few times full SDPA's own
    half-precision error (computing norms in bf16 gave ~200 times, from tied norms)."""
    q, k, v, mask = inputs(B=2, H=4, N=512, D=64, pad=(0, 100), dtype=dtype)
    keep = mask.bool()
    q64, k64, v64 = (t.double() for t in (q, k, v))
    sdpa = torch.nn.functional.scaled_dot_product_attention
    exact = sdpa(q64, k64, v64, attn_mask=keep[:, None, None])
    sdpa_error = (sdpa(q, k, v, attn_mask=keep[:, None, None]).double() - exact).abs().max() / exact.abs().max()
    for sparsity_type in SPARSITY_TYPES:
        knobs = LsgKnobs.make(block_size=64, sparse_block_size=64, sparsity_factor=4, sparsity_type=sparsity_type)
        out, ref = knobs.attend(q, k, v, keep, None, 0.0).double(), knobs.reference(q64, k64, v64, keep, None)
        real = keep[:, None, :, None].expand_as(out)
        error = (out - ref)[real].abs().max() / ref.abs().max()
        assert error < 3 * sdpa_error, (sparsity_type, float(error), float(sdpa_error))


def test_bos_pooling_outputs_of_real_tokens_ignore_what_padding_holds():
    q, k, v, mask = inputs(B=1, N=70, pad=(20,))
    knobs = LsgKnobs.make(block_size=8, sparse_block_size=4, sparsity_factor=2, sparsity_type="bos_pooling")
    out = knobs.attend(q, k, v, mask, None, 0.0)
    noisy = [t.clone() for t in (q, k, v)]
    for t in noisy:
        t[:, :, -20:] = torch.randn_like(t[:, :, -20:]) * 100
    torch.testing.assert_close(knobs.attend(*noisy, mask, None, 0.0)[:, :, :50], out[:, :, :50])


@pytest.mark.parametrize("sparsity_type, g", [("pooling", 1), ("bos_pooling", 0), ("lsh", 2)])
def test_recomputed_backward_replays_dropout(monkeypatch, sparsity_type, g):
    q, k, v, mask = inputs(N=70, pad=(0, 13))
    knobs = dict(block_size=8, sparse_block_size=4, sparsity_factor=2, sparsity_type=sparsity_type,
                 num_global_tokens=g)
    assert_recompute_replays_dropout(lsg_attention, q, k, v, mask, knobs, monkeypatch)


@pytest.mark.parametrize("sparsity_type", SPARSITY_TYPES)
@pytest.mark.parametrize("g", [0, 1])
def test_training_makes_no_copy_of_the_keys(monkeypatch, sparsity_type, g):
    """Forward and backward make the output and three gradients, nothing else the size of K (the gathered
    keys live one piece at a time; the sparse keys' gradients are added into K's and V's in place)."""
    monkeypatch.setattr(blocks, "PIECE_SCORES", 2**12)  # pieces of one block, far smaller than K
    q, k, v = (torch.randn(2, 2, 1025, 16) for _ in range(3))
    knobs = dict(block_size=32, sparse_block_size=32, sparsity_factor=4, sparsity_type=sparsity_type,
                 num_global_tokens=g)
    assert count_input_sized_tensors(lambda *qkv: lsg_attention(*qkv, None, **knobs), q, k, v) == 4
