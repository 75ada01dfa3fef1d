"""The kernel check (lsgbench/kernel_check.py): the block kernels pass within full SDPA's error level, a broken
kernel (output, pattern or gradient) fails it with exit code 1, a kernel without backward is checked forward
only, and the CPU dry run has a row for every configuration."""

import json
import subprocess
import sys

import pytest
import torch

from lsgbench import kernel_check
from lsgbench.attention.local import LocalKnobs, local_attention

SMALL = [("lsg", dict(block_size=16, sparse_block_size=8, sparsity_factor=2, sparsity_type="norm",
                      num_global_tokens=1, backend="blocks")),
         ("local", dict(mode="sliding", window=16, num_global_tokens=1, backend="blocks")),
         ("dilated", dict(window=8, dilation=[1, 2], num_global_tokens=1))]
TINY = ["--device", "cpu", "--seq-len", "80", "--heads", "2", "--head-dim", "16"]


def test_block_kernels_pass_within_sdpa_error_level():
    rows = kernel_check.check_kernels(SMALL, device="cpu", seq_len=80, heads=2, head_dim=16)
    assert [(r["variant"], r["dtype"]) for r in rows] == [(name, d) for d in ("fp32", "bf16") for name, _ in SMALL]
    for row in rows:
        assert row["status"] == "ok" and row["ok"] is True and row["error"] is None, row
        if row["dtype"] == "fp32":  # near SDPA's own fp32 error (~1e-6), far under a missing key's (~1e-2)
            assert row["out_err"] < 2e-6 and row["grad_err"] < 2e-6 and row["sdpa_out_err"] < 2e-6
            assert row["out_tol"] == row["grad_tol"] == 1e-5  # the floor: 4 x SDPA's error is smaller
        else:
            assert row["out_err"] < 1e-2 and row["grad_err"] < 2e-2
            assert row["out_tol"] == max(4 * row["sdpa_out_err"], 1e-2)
            assert row["grad_tol"] == max(4 * row["sdpa_grad_err"], 1e-2)
    assert kernel_check.passed(rows)


def _offset(self, q, k, v, keep, scaling, dropout):
    return local_attention(q, k, v, keep, **self._kernel_args(), scaling=scaling) + 1e-2


def _narrow(self, q, k, v, keep, scaling, dropout):  # one key fewer on each side of the window
    return local_attention(q, k, v, keep, **{**self._kernel_args(), "window": self.window - 2}, scaling=scaling)


def _bad_grad(self, q, k, v, keep, scaling, dropout):  # the right output, a gradient of q off by 1e-2 x upstream
    return local_attention(q, k, v, keep, **self._kernel_args(), scaling=scaling) + 1e-2 * (q - q.detach())


@pytest.mark.parametrize("broken, failing", [(_offset, "out_err"), (_narrow, "out_err"), (_bad_grad, "grad_err")])
def test_a_broken_kernel_fails_the_check(monkeypatch, tmp_path, broken, failing):
    monkeypatch.setattr(LocalKnobs, "attend", broken)
    monkeypatch.setattr(kernel_check, "CONFIGS", SMALL[:2])
    assert kernel_check.main([*TINY, "--out", str(tmp_path)]) == 1
    rows = {(r["variant"], r["dtype"]): r for r in json.loads((tmp_path / "kernel_check.json").read_text())["rows"]}
    assert rows["lsg", "fp32"]["ok"] and rows["lsg", "bf16"]["ok"]
    local = rows["local", "fp32"]  # fp32 catches all three; in bf16 an error of 1e-2 is near SDPA's own
    assert local["status"] == "ok" and local["ok"] is False
    assert local[failing] > 10 * local[failing.replace("err", "tol")]
    assert "| NO |" in (tmp_path / "kernel_check.md").read_text()


def test_a_kernel_without_backward_is_checked_forward_only_and_an_exception_is_a_failure(monkeypatch):
    def no_backward(self, q, k, v, keep, scaling, dropout):  # as flex on CPU
        if q.requires_grad:
            raise NotImplementedError("no backward on this device. More words")
        return local_attention(q, k, v, keep, **self._kernel_args(), scaling=scaling)

    monkeypatch.setattr(LocalKnobs, "attend", no_backward)
    row, = kernel_check.check_kernels(SMALL[1:2], device="cpu", seq_len=80, heads=2, head_dim=16, dtypes=["fp32"])
    assert row["ok"] is True and row["grad_err"] is None and row["out_err"] < 2e-6
    assert row["note"] == "forward only (no backward here): no backward on this device"

    monkeypatch.setattr(LocalKnobs, "attend", lambda *args: torch.zeros(1) @ torch.zeros(2))
    row, = kernel_check.check_kernels(SMALL[1:2], device="cpu", seq_len=80, heads=2, head_dim=16, dtypes=["fp32"])
    assert row["ok"] is False and row["status"] == "error" and row["error"].startswith("RuntimeError")
    assert not kernel_check.passed([row])


@pytest.mark.slow
def test_cpu_dry_run_passes_with_a_row_for_every_configuration(tmp_path):
    done = subprocess.run([sys.executable, "-m", "lsgbench.kernel_check", "--device", "cpu", "--quick", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "kernel_check.json").read_text())
    assert result["device"] == "cpu" and result["passed"] and result["torch"] == torch.__version__
    labels = [kernel_check.config_label(name, knobs, 4) for name, knobs in kernel_check.CONFIGS]
    assert len(set(labels)) == len(labels) == 36 and sum(label.endswith(" causal") for label in labels) == 11
    quick_flex = kernel_check.config_label(*kernel_check.QUICK_FLEX, 4)
    for dtype in ("fp32", "bf16"):
        rows = [r for r in result["rows"] if r["dtype"] == dtype]
        assert [r["label"] for r in rows] == labels
        for row in rows:
            if row["backend"] == "flex" and row["label"] != quick_flex:  # --quick runs flex for one configuration
                assert row["status"] == "skip" and row["ok"] is None
            else:
                assert row["status"] == "ok" and row["ok"] is True, row
                assert row["out_err"] <= row["out_tol"]
                assert row["grad_err"] is not None or row["backend"] == "flex"  # flex has no backward on CPU
    assert (tmp_path / "kernel_check.md").read_text().count("\n| ") == 1 + 72  # header and a line per row
