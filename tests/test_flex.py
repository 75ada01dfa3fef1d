"""FlexAttention versions of the LSG and local kernels (lsgbench/attention/flex.py): they equal the dense
references, and the BlockMasks they build from the layout agree with what create_block_mask finds from their
mask_mod. Eager flex (masks with mask_mod alone, all scores) runs the bulk here; compiled flex has a CPU forward
(slow: a compile per shape and knobs); forward and backward of compiled flex run on CUDA (gpu)."""

import itertools

import pytest
import torch
from torch._dynamo.utils import counters
from torch.nn.attention.flex_attention import create_block_mask

from lsgbench.attention import (SPARSITY_TYPES, flex, local_attention_reference, lsg_attention,
                                lsg_attention_reference)

from helpers import assert_matches, inputs

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

LSG_SHAPES = [(32, 16, 2, 250), (32, 16, 4, 263), (24, 24, 2, 200), (8, 16, 1, 101)]  # b, s, f, N
LOCAL_SIZES = [(40, 24, 250), (16, 50, 263)]                           # window, block_size, N


def float_inputs(N, pad, B=2, H=2, D=16, seed=0):
    q, k, v, mask = inputs(B=B, H=H, N=N, D=D, pad=pad, seed=seed)
    return q.float(), k.float(), v.float(), mask


def lsg_knobs(b, s, f, sparsity_type, g):
    return dict(block_size=b, sparse_block_size=s, sparsity_factor=f, sparsity_type=sparsity_type, num_global_tokens=g)


@pytest.fixture
def eager(monkeypatch):
    monkeypatch.setattr(flex, "COMPILE", False)


@pytest.mark.parametrize("sparsity_type, g, padded", list(itertools.product(SPARSITY_TYPES, [0, 2], [True, False])))
def test_lsg_flex_matches_reference(eager, sparsity_type, g, padded):
    for b, s, f, N in LSG_SHAPES:
        q, k, v, mask = float_inputs(N, pad=(0, 90))  # row 1: a padded tail longer than 2 blocks
        knobs = lsg_knobs(b, s, f, sparsity_type, g)
        torch.testing.assert_close(flex.lsg_attention_flex(q, k, v, mask if padded else None, **knobs),
                                   lsg_attention_reference(q, k, v, mask if padded else None, **knobs),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode, g, padded", list(itertools.product(["sliding", "disjoint"], [0, 1], [True, False])))
def test_local_flex_matches_reference(eager, mode, g, padded):
    for window, block_size, N in LOCAL_SIZES:
        q, k, v, mask = float_inputs(N, pad=(0, 90))  # g = 0: queries deep in the tail see no key (zeros)
        knobs = dict(mode=mode, window=window, block_size=block_size, num_global_tokens=g)
        torch.testing.assert_close(flex.local_attention_flex(q, k, v, mask if padded else None, **knobs),
                                   local_attention_reference(q, k, v, mask if padded else None, **knobs),
                                   atol=1e-5, rtol=1e-5)


def test_short_and_global_only_inputs(eager):
    """Only globals, fewer tokens than a block: as the block kernels (the reference cannot take N = g
    with sparse keys)."""
    for N, g in [(3, 3), (5, 2), (40, 1)]:
        q, k, v, mask = float_inputs(N, pad=(0, 1))
        for sparsity_type in ("pooling", "stride"):
            knobs = lsg_knobs(32, 16, 2, sparsity_type, g)
            torch.testing.assert_close(flex.lsg_attention_flex(q, k, v, mask, **knobs),
                                       lsg_attention(q, k, v, mask, **knobs), atol=1e-5, rtol=1e-5)
        knobs = dict(mode="sliding", window=8, block_size=0, num_global_tokens=g)
        torch.testing.assert_close(flex.local_attention_flex(q, k, v, mask, **knobs),
                                   local_attention_reference(q, k, v, mask, **knobs), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ the BlockMask from the layout

def block_mask_of(kernel, q, k, v, keep, knobs, monkeypatch):
    """The BlockMask `kernel` hands to flex (which is not run)."""
    made = []
    monkeypatch.setattr(flex, "_flex", lambda q, keys, values, block_mask, scaling: made.append(block_mask) or q)
    kernel(q, k, v, keep, **knobs)
    return made[0]


def tiles(num, index):
    """A BlockMask's (counts, indices) as dense [B, H, Qt, KVt] bools."""
    listed = torch.arange(index.shape[-1]) < num[..., None]
    return torch.zeros(index.shape, dtype=torch.bool).scatter(-1, index.long(), listed)


def assert_layout_agrees(block_mask, B, H, exact):
    """Every tile where mask_mod allows a pair is visited, tiles marked whole are all allowed, and with `exact`
    the tiles are those of create_block_mask (which evaluates mask_mod over all pairs)."""
    n, length = block_mask.seq_lengths
    dense = create_block_mask(block_mask.mask_mod, B, H, n, length, device="cpu", BLOCK_SIZE=flex.TILE)
    partial, whole = tiles(block_mask.kv_num_blocks, block_mask.kv_indices), \
        tiles(block_mask.full_kv_num_blocks, block_mask.full_kv_indices)
    want_partial, want_whole = tiles(dense.kv_num_blocks, dense.kv_indices), \
        tiles(dense.full_kv_num_blocks, dense.full_kv_indices)
    seen, want_seen = (partial | whole).expand_as(want_partial), want_partial | want_whole
    assert not (partial & whole).any()
    assert (seen | ~want_seen).all(), "a tile with allowed pairs is skipped"
    assert (want_whole | ~whole).all(), "a tile marked whole has masked pairs"
    if exact:
        assert torch.equal(seen, want_seen) and torch.equal(whole.expand_as(want_whole), want_whole)


@pytest.mark.parametrize("tile, N, causal", [(16, 250, False), (32, 290, False), (64, 258, False), (16, 250, True),
                                             (32, 290, True)])
def test_lsg_block_mask_from_the_layout_agrees_with_create_block_mask(monkeypatch, tile, N, causal):
    monkeypatch.setattr(flex, "TILE", tile)
    q, k, v, mask = float_inputs(N, pad=(0, 90))
    mask[:, 3] = 0  # padding inside whole tiles too
    for sparsity_type, g, padded, (b, s, f) in itertools.product(SPARSITY_TYPES, [0, 2], [True, False],
                                                                  [(32, 16, 2), (16, 8, 4), (24, 24, 2), (8, 16, 1)]):
        if sparsity_type in ("norm", "lsh") and (b % min(b, s) or min(b, s) % f):
            continue
        block_mask = block_mask_of(flex.lsg_attention_flex, q, k, v, mask if padded else None,
                                   {**lsg_knobs(b, s, f, sparsity_type, g), "causal": causal}, monkeypatch)
        # Without padding every key the layout lists is kept (lsh leaves empty buckets; block padding
        # leaves empty sparse keys), so the tiles are create_block_mask's exactly.
        exact = not padded and sparsity_type != "lsh" and (N - g) % b == 0
        assert_layout_agrees(block_mask, 2, 2, exact)


@pytest.mark.parametrize("tile", [16, 32, 64])
def test_local_block_mask_from_the_layout_agrees_with_create_block_mask(monkeypatch, tile):
    monkeypatch.setattr(flex, "TILE", tile)
    q, k, v, mask = float_inputs(263, pad=(0, 90))
    mask[:, 3] = 0
    for mode, g, padded, size, causal in itertools.product(["sliding", "disjoint"], [0, 1, 3], [True, False],
                                                           [8, 24, 40], [False, True]):
        knobs = dict(mode=mode, window=size, block_size=size, num_global_tokens=g, causal=causal)
        block_mask = block_mask_of(flex.local_attention_flex, q, k, v, mask if padded else None, knobs, monkeypatch)
        # causal disjoint: whole tiles below the diagonal of a block are left partial (correct, a little slower)
        assert_layout_agrees(block_mask, 2, 2, exact=not padded and not (causal and mode == "disjoint"))


def test_layouts_are_cached_per_knobs_and_length(monkeypatch):
    q, k, v, mask = float_inputs(250, pad=(0, 9))
    knobs = lsg_knobs(32, 16, 2, "pooling", 1)
    first = block_mask_of(flex.lsg_attention_flex, q, k, v, mask, knobs, monkeypatch)
    hits = flex._lsg_tiles.cache_info().hits
    again = block_mask_of(flex.lsg_attention_flex, q, k, v, mask, knobs, monkeypatch)
    assert flex._lsg_tiles.cache_info().hits == hits + 1
    assert torch.equal(first.kv_indices, again.kv_indices)


# ------------------------------------------------------------------ compiled flex

@pytest.fixture
def fresh_dynamo():
    """Compiled flex from a clean slate, so each test's knobs start static: a captured int that changes
    between calls turns dynamic, and on CPU the C++ flex template then fails to build for a dynamic divisor
    (the block size). Varying lengths and batch sizes are fine (test below)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def graphs():
    return counters["stats"]["unique_graphs"]


@pytest.mark.slow
@pytest.mark.parametrize("sparsity_type", ["none", "pooling", "stride"])  # stride: a keep mask per head
def test_compiled_lsg_forward_matches_reference_on_cpu(fresh_dynamo, monkeypatch, sparsity_type):
    """Compiled flex reads the BlockMask (skipped tiles, whole tiles without mask_mod); new padding does
    not recompile."""
    monkeypatch.setattr(flex, "TILE", 32)
    q, k, v, mask = float_inputs(250, pad=(0, 90))
    knobs = lsg_knobs(32, 16, 2, sparsity_type, 2)
    compiled = []
    for tail in (90, 40):
        mask[1] = 1
        mask[1, -tail:] = 0
        torch.testing.assert_close(flex.lsg_attention_flex(q, k, v, mask, **knobs),
                                   lsg_attention_reference(q, k, v, mask, **knobs), atol=1e-5, rtol=1e-5)
        compiled.append(graphs())
    assert compiled[0] == compiled[1]


@pytest.mark.slow
@pytest.mark.parametrize("mode, g", [("sliding", 0), ("disjoint", 1)])
def test_compiled_local_forward_matches_reference_on_cpu(fresh_dynamo, monkeypatch, mode, g):
    monkeypatch.setattr(flex, "TILE", 32)
    q, k, v, mask = float_inputs(263, pad=(0, 120))  # sliding, g = 0: queries that see no key
    knobs = dict(mode=mode, window=20, block_size=24, num_global_tokens=g)
    torch.testing.assert_close(flex.local_attention_flex(q, k, v, mask, **knobs),
                               local_attention_reference(q, k, v, mask, **knobs), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_compiled_flex_on_cpu_compiles_each_shape_once(fresh_dynamo, monkeypatch):
    """Batches padded to their longest sequence: on CPU each new (batch, length) compiles static once; new
    padding and a shape seen before compile nothing."""
    monkeypatch.setattr(flex, "TILE", 32)
    knobs = lsg_knobs(32, 16, 2, "bos_pooling", 1)
    before = graphs()
    for B, N, tail in [(2, 250, 60), (2, 300, 10), (3, 380, 100), (2, 250, 30), (2, 300, 0)]:
        q, k, v, mask = float_inputs(N, pad=(0,) * (B - 1) + (tail,), B=B, seed=N)
        torch.testing.assert_close(flex.lsg_attention_flex(q, k, v, mask, **knobs),
                                   lsg_attention_reference(q, k, v, mask, **knobs), atol=1e-5, rtol=1e-5)
    assert graphs() - before == 3


GPU_CASES = {**{f"lsg-{t}": ("lsg", lsg_knobs(64, 64, 4, t, 2)) for t in SPARSITY_TYPES},
             **{f"local-{m}-g{g}": ("local", dict(mode=m, window=128, block_size=64, num_global_tokens=g))
                for m in ("sliding", "disjoint") for g in (0, 1)}}
KERNELS = {"lsg": (flex.lsg_attention_flex, lsg_attention_reference),
           "local": (flex.local_attention_flex, local_attention_reference)}


def assert_cuda_forward_and_backward(kind, knobs, B=2, N=1000, tail=150, seed=0):
    """Compiled flex in float32 against the float64 reference, outputs and the gradients of q, k, v."""
    kernel, reference = KERNELS[kind]
    q, k, v, mask = (t.cuda() for t in inputs(B=B, H=4, N=N, D=32, pad=(0,) * (B - 1) + (tail,), seed=seed))
    assert_matches(lambda *a: kernel(*a, **knobs), lambda *a: reference(*a, **knobs), q, k, v, mask,
                   dtype=torch.float32, atol=2e-5, rtol=2e-5, grad_tol=(1e-4, 1e-4))


@pytest.mark.gpu
@pytest.mark.parametrize("kind, knobs", list(GPU_CASES.values()), ids=list(GPU_CASES))
def test_compiled_flex_equals_reference_forward_and_backward_on_cuda(fresh_dynamo, kind, knobs):
    assert_cuda_forward_and_backward(kind, knobs)  # TILE = 128: 8 query tiles


@pytest.mark.gpu
def test_compiled_flex_on_cuda_across_lengths_batch_sizes_and_knobs(fresh_dynamo):
    """One process, as in training, evaluation or a sweep: lengths and batch sizes vary (dynamic after the
    first change), then the knobs change (their ints turn dynamic too)."""
    knobs = lsg_knobs(64, 64, 4, "pooling", 1)
    for B, N, tail in [(2, 1000, 150), (2, 900, 0), (3, 1300, 400), (2, 700, 90)]:
        assert_cuda_forward_and_backward("lsg", knobs, B=B, N=N, tail=tail, seed=N)
    for b, s, f, g in [(32, 32, 2, 1), (128, 64, 4, 2)]:
        assert_cuda_forward_and_backward("lsg", lsg_knobs(b, s, f, "stride", g), N=1100)
    for window in (64, 256):
        assert_cuda_forward_and_backward("local", dict(mode="sliding", window=window, block_size=0,
                                                       num_global_tokens=0), N=1100, tail=500)


@pytest.mark.parametrize("causal", [False, True])
def test_grouped_kv_heads_serve_their_query_heads(eager, causal):
    """K/V with fewer heads than the queries (grouped-query attention, flex's enable_gqa) equal the kernels over
    K/V repeated to every query head, as transformers' repeat_kv; sparse keys that differ by query head (stride, lsh, bos_pooling) come from repeated K/V."""
    q, k, v, mask = float_inputs(263, pad=(0, 90), H=4)
    k, v = k[:, ::2], v[:, ::2]                                     # 2 K/V heads, each serving 2 query heads
    repeated = [t.repeat_interleave(2, dim=1) for t in (k, v)]
    for sparsity_type, g in [("pooling", 2), ("norm", 0), ("stride", 0), ("lsh", 1), ("bos_pooling", 1)]:
        knobs = {**lsg_knobs(32, 16, 2, sparsity_type, g), "causal": causal}
        torch.testing.assert_close(flex.lsg_attention_flex(q, k, v, mask, **knobs),
                                   lsg_attention_reference(q, *repeated, mask, **knobs), atol=1e-5, rtol=1e-5)
    knobs = dict(mode="sliding", window=40, block_size=0, num_global_tokens=1, causal=causal)
    torch.testing.assert_close(flex.local_attention_flex(q, k, v, mask, **knobs),
                               local_attention_reference(q, *repeated, mask, **knobs), atol=1e-5, rtol=1e-5)
