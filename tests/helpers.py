"""Helpers the tests share: attention inputs, a plain full-attention oracle, the shared data samples,
tiny models."""

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TEXTS = ["alpha beta gamma delta epsilon . " * 40, "zeta eta theta iota kappa . " * 40]


def shared_data(name: str) -> Path:
    """A folder of ../shared/data, or skip the test when the samples are absent."""
    path = Path(os.environ.get("LSGBENCH_SHARED_DATA", SHARED_DATA)) / name
    if not path.is_dir():
        pytest.skip(f"shared data sample {name!r} not found at {path}")
    return path


def inputs(B=2, H=4, N=53, D=8, pad=(0, 9), seed=0, dtype=torch.float64):
    """q, k, v [B, H, N, D] and a padding mask [B, N] with pad[i] padded positions at the end of row i."""
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, N, D, generator=gen, dtype=torch.float64).to(dtype) for _ in range(3))
    mask = torch.ones(B, N, dtype=torch.long)
    for i, p in enumerate(pad[:B]):
        if p:
            mask[i, -p:] = 0
    return q, k, v, mask


def full_attention(q, k, v, mask):
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    scores = scores.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
    return scores.softmax(-1) @ v


def assert_matches(kernel, reference, q, k, v, mask, dtype=torch.float64, atol=1e-10, rtol=1e-8, grad_tol=None):
    """Forward and backward of kernel(q, k, v, mask) on inputs in `dtype` equal reference(q, k, v, mask) in
    float64: outputs, then the gradients of q, k, v (to `grad_tol` = (atol, rtol) when given)."""
    leaves = [t.detach().to(dtype).clone().requires_grad_() for t in (q, k, v)]
    ref_leaves = [t.detach().double().clone().requires_grad_() for t in (q, k, v)]
    out, ref = kernel(*leaves, mask), reference(*ref_leaves, mask)
    assert out.shape == q.shape
    torch.testing.assert_close(out.double(), ref, atol=atol, rtol=rtol)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(ref.device)
    (out.double() * weight).sum().backward()
    (ref * weight).sum().backward()
    grad_atol, grad_rtol = grad_tol or (atol, rtol)
    for a, b in zip(leaves, ref_leaves):
        torch.testing.assert_close(a.grad.double(), b.grad, atol=grad_atol, rtol=grad_rtol)


def assert_kernel_matches_reference(knobs, q, k, v, mask, atol=1e-10, rtol=1e-8):
    """Forward and backward of `knobs.attend` equal `knobs.reference` (float64 inputs)."""
    assert_matches(lambda *a: knobs.attend(*a, None, 0.0), lambda *a: knobs.reference(*a, None), q, k, v, mask,
                   atol=atol, rtol=rtol)


def assert_recompute_replays_dropout(kernel, q, k, v, mask, knobs, monkeypatch):
    """With dropout, the recomputing backward (one block per piece) gives the outputs, gradients and
    random state after it of plain autograd over the same pieces, and dropout did drop."""
    from lsgbench.attention import blocks

    monkeypatch.setattr(blocks, "PIECE_SCORES", 1)
    runs = []
    for recompute in (True, False):
        monkeypatch.setattr(blocks, "RECOMPUTE", recompute)
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        torch.manual_seed(5)
        out = kernel(*leaves, mask, **knobs, dropout=0.3)
        after = torch.rand(1)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        runs.append((out, after, torch.rand(1), *(t.grad for t in leaves)))
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    assert (runs[0][0] - kernel(q, k, v, mask, **knobs)).abs().max() > 1e-3


def count_input_sized_tensors(kernel, q, k, v) -> int:
    """How many tensors at least the size of K one training step of `kernel(q, k, v)` allocates (an op's
    output not sharing storage with its arguments). A memory-lean kernel makes 4: its output and the
    three gradients; a copy of K or V, or a gradient made and then added into another, shows up here."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    size = k.numel() * k.element_size()
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]

    class Count(TorchDispatchMode):
        made = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            given = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
            Count.made += sum(t.untyped_storage().nbytes() >= size and t.untyped_storage().data_ptr() not in given
                              for t in tree_leaves(out) if isinstance(t, torch.Tensor))
            return out

    with Count():
        torch.autograd.grad(kernel(*leaves).sum(), leaves)  # not .backward(): leaves may copy to their own layout
    return Count.made


def write_corpus(folder, train: list[dict], test: list[dict]):
    """A local folder of train.jsonl and test.jsonl rows."""
    import json

    folder.mkdir()
    for split, rows in (("train", train), ("test", test)):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder
