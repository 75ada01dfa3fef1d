"""How many operations a layer call of each converted kernel launches: on a GPU each costs tens of microseconds
whatever its size, so a kernel that launches thousands is slow there however few FLOPs it does (the blocks
backend once made ~6,800 per LSG layer call at 16k). The counts are the same on a CPU, so they are pinned here.

Shapes: a base layer (12 heads) at 16,384 tokens, batch 1. Blocks backend: forward and backward under the CUDA
policy (its pieces sized by an 80 GB GPU's memory). Flex backend: the eager ops of one layer call outside the
flex kernel, as a converted model makes it (the kernel itself is stubbed), one BlockMask build per forward,
and the tiles the kernel computes."""

import types

import pytest
import torch
from torch.nn.attention.flex_attention import BlockMask

from lsgbench.attention import VARIANTS, blocks, flex, memo
from lsgbench.measure import KernelOps
from lsgbench.models import attention_interface

H, N = 12, 16384
LSG = dict(block_size=128, sparse_block_size=128, sparsity_factor=4, num_global_tokens=1)
BLOCKS_BUDGET = 400  # kernel ops per layer call, forward and backward
FLEX_BUDGET = 35     # eager ops per layer call outside the flex kernel


def blocks_ops(name, length, causal=False, **knobs) -> int:
    """Kernel ops of one forward and backward of the blocks kernel (head dim 16: the count does not depend on it)."""
    variant = VARIANTS[name]
    kernel = variant.make(**knobs, **({"backend": "blocks"} if "backend" in variant.knob_names() else {}))
    q, k, v = (torch.randn(1, H, length, 16, requires_grad=True) for _ in range(3))
    with KernelOps() as ops:
        kernel.attend(q, k, v, None, None, 0.0, causal=causal).sum().backward()
    return ops.total


@pytest.fixture
def cuda_policy(monkeypatch):
    monkeypatch.setattr(blocks, "PIECE_SCORES", blocks.cuda_piece_scores(80 * 2**30))


def test_the_cpu_keeps_lean_pieces_and_a_gpu_takes_few():
    per_block = H * 128 * (1 + 3 * 128 + 2 * 128)  # LSG's scores per block of queries at b = s = 128, g = 1
    assert len(blocks.block_pieces(1, N // 128, per_block, torch.device("cpu"))) == 128  # 2**20 scores a piece
    assert blocks.cuda_piece_scores(80 * 2**30) == 80 * 2**30 // 32 // 8
    blocks.PIECE_SCORES = blocks.cuda_piece_scores(80 * 2**30)
    try:
        assert len(blocks.block_pieces(1, N // 128, per_block, torch.device("cpu"))) == 1
        assert len(blocks.block_pieces(16, 1024 // 128, per_block, torch.device("cpu"))) == 1  # 16 x 1k tokens
    finally:
        blocks.PIECE_SCORES = None


@pytest.mark.parametrize("sparsity_type, causal", [("pooling", False), ("pooling", True), ("stride", False),
                                                   ("lsh", False), ("none", True)])
def test_lsg_blocks_launches_a_flat_few_hundred_ops_on_a_gpu(cuda_policy, sparsity_type, causal):
    at_16k = blocks_ops("lsg", N, causal, sparsity_type=sparsity_type, **LSG)
    assert at_16k <= BLOCKS_BUDGET
    assert blocks_ops("lsg", N // 4, causal, sparsity_type=sparsity_type, **LSG) == at_16k  # flat in length


@pytest.mark.parametrize("name, knobs", [("local", dict(mode="sliding", window=256)),
                                         ("local", dict(mode="disjoint", block_size=128)),
                                         ("dilated", dict(window=256, dilation=(1, 2) * 6))])
def test_local_and_dilated_blocks_launch_a_flat_few_ops_on_a_gpu(cuda_policy, name, knobs):
    at_16k = blocks_ops(name, N, **knobs)
    assert at_16k <= BLOCKS_BUDGET // 2
    assert blocks_ops(name, N // 4, **knobs) == at_16k


def test_the_cpu_policy_runs_many_pieces_of_the_same_kernel():
    """The lean CPU pieces launch far more ops (fine on a CPU, where arithmetic dominates): what the GPU policy
    saves."""
    assert blocks_ops("lsg", 4096, sparsity_type="pooling", **LSG) > 4 * BLOCKS_BUDGET


class FlexStub:
    """Stands in for the flex kernel: records the BlockMasks and returns zeros shaped like the queries."""

    def __init__(self, monkeypatch):
        self.masks = []
        monkeypatch.setattr(flex, "_flex", self)

    def __call__(self, query, keys, values, block_mask, scaling):
        self.masks.append(block_mask)
        return query.new_zeros(query.shape)


def layer_call(knobs, causal, mask, kv_heads=H):
    module = types.SimpleNamespace(long_attention=knobs, training=False, is_causal=causal)
    q = torch.randn(1, H, N, 64)
    k, v = torch.randn(1, kv_heads, N, 64), torch.randn(1, kv_heads, N, 64)
    return lambda: attention_interface.attention_forward(module, q, k, v, mask)


@pytest.mark.parametrize("name, knobs, causal", [("lsg", dict(sparsity_type="pooling", **LSG), False),
                                                 ("lsg", dict(sparsity_type="pooling", **LSG), True),
                                                 ("lsg", dict(sparsity_type="stride", **LSG), False),
                                                 ("local", dict(mode="sliding", window=512, num_global_tokens=0), True),
                                                 ("local", dict(mode="disjoint", block_size=128), False)])
@pytest.mark.parametrize("padded", [False, True])
def test_a_flex_layer_call_launches_few_ops_besides_the_kernel_and_builds_no_block_mask(monkeypatch, name, knobs,
                                                                                        causal, padded):
    stub = FlexStub(monkeypatch)
    memo.clear()
    knobs = VARIANTS[name].make(backend="flex", **knobs)
    knobs = knobs.for_decoder() if causal else knobs
    mask = torch.ones(1, N - knobs.num_global_tokens if not causal else N, dtype=torch.long)
    mask[:, -100:] = 0 if padded else 1
    call = layer_call(knobs, causal, mask, kv_heads=4 if causal else H)  # decoders: grouped K/V heads
    call()  # the forward's first layer: derives the padding mask and builds the BlockMask
    builds = []
    monkeypatch.setattr(BlockMask, "from_kv_blocks", classmethod(lambda *a, **k: builds.append(1)))
    with KernelOps() as ops:
        call()  # another layer of the same forward
    assert ops.total - 1 <= FLEX_BUDGET, ops.ops  # the stub's zeros aside
    assert not builds and len(stub.masks) == 2 and stub.masks[0].kv_indices is stub.masks[1].kv_indices
    assert "repeat_interleave" not in ops.ops  # grouped K/V heads go to flex as they are (enable_gqa)


def tile_counts(g, causal):
    n, b, f, s = N - g if causal else N, 128, 4, 128  # decoders' globals are their first tokens
    nb = -(-n // b)
    seen, whole, _ = flex._lsg_tiles(n, g, b, b // f, s, nb * b // f, nb * b, flex.TILE, torch.device("cpu"), causal)
    return int(seen.sum()), int(whole.sum())


def test_lsg_blocks_start_on_flex_tiles():
    """Keys laid out [tokens | sparse | globals]: a block of 128 is one tile of queries and one of keys. Causal LSG
    b = s = 128, f = 4 at 16k computes 473 tiles, 33 % whole (the same pattern shifted by one global token was 726
    tiles, 4 % whole); a global token adds one partial tile per tile of queries."""
    assert tile_counts(0, causal=True) == (473, 158)
    assert tile_counts(1, causal=True) == (473 + 128, 157)
    assert tile_counts(1, causal=False) == (946, 444)


@pytest.mark.parametrize("model, attention, causal", [("roberta", "lsg", False), ("llama", "lsg", True),
                                                      ("llama", "local", True)])
def test_a_converted_model_builds_one_block_mask_per_forward(make_cfg, monkeypatch, model, attention, causal):
    """Every layer of a forward shares the BlockMask the first one built (the tiny models have 2 layers; the llama
    one has grouped K/V heads); a new batch builds a new one. Eager flex on the CPU, so outputs are real."""
    from helpers import TEXTS
    from lsgbench.models import build_model

    monkeypatch.setattr(flex, "COMPILE", False)
    memo.clear()
    cfg = make_cfg(f"model={model}", f"attention={attention}", "task=synth_keys", "model.init=random",
                   "model.size=tiny", "model.max_length=512", "model.attention.backend=flex",
                   *(["model.attention.block_size=32", "model.attention.sparse_block_size=32"] if attention == "lsg"
                     else ["model.attention.window=64"]))
    built = build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir)
    builds = []
    original = BlockMask.from_kv_blocks.__func__
    monkeypatch.setattr(BlockMask, "from_kv_blocks", classmethod(lambda *a, **k: builds.append(1) or original(*a, **k)))
    ids = torch.randint(5, 100, (2, 300))
    mask = torch.ones_like(ids)
    mask[1, 250:] = 0
    with torch.inference_mode():
        for _ in range(2):
            built.model.eval()(input_ids=ids, attention_mask=mask.clone())
    assert len(builds) == 2  # one per forward, not one per layer (2 layers)


def test_what_inference_made_is_not_handed_to_training():
    """A BlockMask or padding mask made under inference_mode is an inference tensor, which autograd cannot save: the
    memo keeps those of inference and training apart."""
    memo.clear()
    with torch.inference_mode():
        made_in_inference = memo.once_per(None, "keep", lambda: torch.ones(3))
    made_in_training = memo.once_per(None, "keep", lambda: torch.ones(3))
    assert made_in_inference.is_inference() and not made_in_training.is_inference()
    assert memo.once_per(None, "keep", lambda: None) is made_in_training
