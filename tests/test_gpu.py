"""On CUDA: the kernels equal their references forward and backward, and in bf16 stay at full SDPA's
own error level. Skipped without a GPU (tests/conftest.py)."""

import pytest
import torch

from lsgbench.attention import SPARSITY_TYPES
from lsgbench.attention.dilated import DilatedKnobs
from lsgbench.attention.local import LocalKnobs
from lsgbench.attention.lsg import LsgKnobs

from helpers import assert_matches, inputs

KNOBS = [LsgKnobs.make(block_size=64, sparse_block_size=64, sparsity_factor=4, sparsity_type=t, num_global_tokens=2)
         for t in SPARSITY_TYPES] + \
        [LocalKnobs.make(mode=m, window=128, block_size=64, num_global_tokens=g) for m in ("sliding", "disjoint")
         for g in (0, 1)] + [DilatedKnobs.make(window=64, dilation=[1, 2, 4, 8], num_global_tokens=1)]


@pytest.mark.gpu
@pytest.mark.parametrize("knobs", KNOBS, ids=lambda k: k.label())
def test_kernels_equal_their_references_on_cuda(knobs):
    q, k, v, mask = (t.cuda() for t in inputs(B=2, H=4, N=700, D=32, pad=(0, 90)))
    assert_matches(lambda *a: knobs.attend(*a, None, 0.0), lambda *a: knobs.reference(*a, None), q, k, v, mask,
                   dtype=torch.float32, atol=2e-5, rtol=2e-5, grad_tol=(1e-4, 1e-4))


@pytest.mark.gpu
@pytest.mark.parametrize("knobs", KNOBS, ids=lambda k: k.label())
def test_bf16_kernels_stay_at_sdpa_error_level_on_cuda(knobs):
    q, k, v, mask = (t.cuda() for t in inputs(B=2, H=4, N=1024, D=64, pad=(0, 100), dtype=torch.bfloat16))
    keep = mask.bool()
    q64, k64, v64 = (t.double() for t in (q, k, v))
    sdpa = torch.nn.functional.scaled_dot_product_attention
    exact = sdpa(q64, k64, v64, attn_mask=keep[:, None, None])
    sdpa_error = (sdpa(q, k, v, attn_mask=keep[:, None, None]).double() - exact).abs().max() / exact.abs().max()
    out, ref = knobs.attend(q, k, v, keep, None, 0.0).double(), knobs.reference(q64, k64, v64, keep, None)
    real = keep[:, None, :, None].expand_as(out)
    assert ((out - ref)[real].abs().max() / ref.abs().max()) < 3 * sdpa_error


CAUSAL = [LsgKnobs.make(block_size=64, sparse_block_size=64, sparsity_factor=4, sparsity_type=t, num_global_tokens=2,
                        backend=backend) for t in ("pooling", "norm", "bos_pooling") for backend in ("blocks", "flex")] + \
         [LocalKnobs.make(mode=m, window=128, block_size=64, num_global_tokens=1, backend=backend)
          for m in ("sliding", "disjoint") for backend in ("blocks", "flex")] + \
         [DilatedKnobs.make(window=64, dilation=[1, 2, 4, 8], num_global_tokens=1)]


@pytest.mark.gpu
@pytest.mark.parametrize("knobs", CAUSAL, ids=lambda k: k.label())
def test_causal_kernels_equal_their_references_forward_and_backward_on_cuda(knobs):
    """Compiled flex included (its causal BlockMask, and its backward, which the CPU lacks)."""
    q, k, v, mask = (t.cuda() for t in inputs(B=2, H=4, N=700, D=32, pad=(0, 90)))
    assert_matches(lambda *a: knobs.attend(*a, None, 0.0, causal=True),
                   lambda *a: knobs.reference(*a, None, causal=True), q, k, v, mask,
                   dtype=torch.float32, atol=2e-5, rtol=2e-5, grad_tol=(1e-4, 1e-4))
