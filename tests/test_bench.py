import json
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir

import lsgbench.bench as bench
from lsgbench.config import config_dir
from lsgbench.errors import ConfigError


def bench_cfg(tmp_path, *overrides):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("bench", overrides=[f"paths.cache_dir={tmp_path}", "bench.tokens_per_batch=256", "bench.repeats=1",
                                           "bench.warmup=1", *overrides])


def test_rows_hold_tokens_per_batch_constant_and_measure_both_phases(tmp_path):
    cfg = bench_cfg(tmp_path, "model=lsg_roberta", "bench.seq_lens=[64,128,512]", "model.attention.block_size=16",
                    "model.attention.sparse_block_size=16")
    rows = bench.run_bench(cfg)
    assert [(r["seq_len"], r["batch"], r["phase"]) for r in rows] == [
        (64, 4, "infer"), (64, 4, "train"), (128, 2, "infer"), (128, 2, "train"), (512, 1, "infer"), (512, 1, "train")]
    for r in rows:
        assert r["status"] == "ok" and r["step_s"] > 0 and r["peak_mem_mb"] >= 0
        assert r["tokens_per_s"] == pytest.approx(r["tokens"] / r["step_s"])
        assert r["attention"].startswith("lsg b=16 s=16") and r["backend"] == "blocks"
        # the achieved FLOP/s and their share of the dense matmul rate measured in the same run (one per run)
        assert r["flops_per_s"] == pytest.approx(r["flops_per_token"] * r["tokens_per_s"])
        assert r["mfu"] == pytest.approx(r["flops_per_s"] / r["matmul_rate"]) and 0 < r["mfu"] < 1.5
    assert len({r["matmul_rate"] for r in rows}) == 1
    # the ops of a step, counted once apart from the timed steps: backward's on top of forward's, near flat in length
    # (every length here is one piece of blocks on the CPU)
    ops = {(r["seq_len"], r["phase"]): r["kernel_ops"] for r in rows}
    assert ops[64, "train"] > 2 * ops[64, "infer"] > 0 and abs(ops[128, "train"] - ops[512, "train"]) < 50


def test_the_matmul_rate_counts_two_n_cubed_flops_per_product(monkeypatch):
    clock = iter(range(100))
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock) * 0.5)  # every product takes 0.5 s
    assert bench.matmul_rate(torch.device("cpu"), torch.float32, repeats=3) == pytest.approx(2 * 1024**3 / 0.5)


def test_attention_only_mode_times_the_kernel(tmp_path):
    rows = bench.run_bench(bench_cfg(tmp_path, "model=local_roberta", "bench.mode=attention", "bench.seq_lens=[128]",
                                     "model.attention.window=32"))
    assert [r["phase"] for r in rows] == ["infer", "train"] and all(r["status"] == "ok" for r in rows)
    assert all(r["head"] is None for r in rows)  # the kernel alone: no model, no head


def test_encoder_decoders_are_timed_with_their_generation_head(tmp_path):
    for model in ("lsg_bart", "longt5_tglobal", "pegasus_x"):
        rows = bench.run_bench(bench_cfg(tmp_path, f"model={model}", "bench.seq_lens=[128]", "bench.new_tokens=4",
                                         "bench.mode=train", "bench.count=false"))
        assert [(r["phase"], r["status"], r["head"]) for r in rows] == [("train", "ok", "summarization")], (model, rows)
        assert "flops_per_token" not in rows[0]


def test_generate_mode_makes_exactly_new_tokens_for_each_beam_count(tmp_path):
    rows = bench.run_bench(bench_cfg(tmp_path, "model=lsg_bart", "bench.mode=generate", "bench.seq_lens=[128,256]",
                                     "bench.new_tokens=5", "bench.beams=[1,3]", "bench.generate_batch=2",
                                     "model.attention.block_size=16", "model.attention.sparse_block_size=16"))
    assert [(r["seq_len"], r["phase"], r["batch"], r["status"]) for r in rows] == [
        (128, "greedy", 2, "ok"), (128, "beam3", 2, "ok"), (256, "greedy", 2, "ok"), (256, "beam3", 2, "ok")]
    for r in rows:  # tokens/s counts generated tokens; the step checked there were exactly new_tokens of them
        assert r["tokens_per_s"] == pytest.approx(2 * 5 / r["step_s"])
        assert r["flops_per_token"] > 0 and "saved_bytes_per_token" not in r
    # beam search decodes 3 hypotheses per sequence (the encoder runs once either way): more work per token
    assert rows[1]["flops_per_token"] > rows[0]["flops_per_token"]


def test_decoders_generate_with_prefill_and_decode_timed_apart_and_a_sliding_window_bounds_the_cache(tmp_path):
    rows = {}
    for model, window in (("llama", []), ("mistral", ["model.attention.sliding_window=32"])):
        rows[model] = bench.run_bench(bench_cfg(tmp_path, f"model={model}", "bench.mode=generate", *window,
                                                "bench.seq_lens=[64,256]", "bench.new_tokens=5"))
    for r in rows["llama"] + rows["mistral"]:
        assert r["status"] == "ok" and r["phase"] == "greedy" and r["tokens_per_s"] == pytest.approx(5 / r["step_s"])
        assert 0 < r["time_to_first_token_s"] < r["step_s"] and r["decode_tokens_per_s"] > 0
    # tiny: 2 layers x (keys + values) x 1 K/V head x 32 dims x fp32; full attention caches every token
    per_token = 2 * 2 * 1 * 32 * 4 / 2**20
    assert [r["kv_cache_mb"] for r in rows["llama"]] == pytest.approx([(64 + 4) * per_token, (256 + 4) * per_token])
    assert [r["kv_cache_mb"] for r in rows["mistral"]] == pytest.approx([31 * per_token] * 2)  # the window's 31
    assert [r["kv_cache_bounded"] for r in rows["llama"] + rows["mistral"]] == [False, False, True, True]


def test_generate_mode_needs_a_decoder(tmp_path):
    with pytest.raises(ConfigError, match="bench.mode=generate times generation; model 'roberta'"):
        bench.run_bench(bench_cfg(tmp_path, "model=roberta", "bench.mode=generate", "bench.seq_lens=[64]"))
    with pytest.raises(ConfigError, match=r"bench.beams=\[0\] must list beam counts >= 1"):
        bench.run_bench(bench_cfg(tmp_path, "model=bart", "bench.mode=generate", "bench.beams=[0]"))


def test_counted_flops_and_saved_bytes_match_hand_counts(tmp_path):
    # Full attention (SDPA) at the tiny shape, h = 2 heads of d = 32: QK^T and PV are 2 * 2 * s * d FLOPs per
    # query and head; backward does 2.5 times that. Saved for backward: q, k, v and the output (4 floats per
    # head dimension) and one log-sum-exp float per head.
    h, d = 2, 32
    rows = bench.run_bench(bench_cfg(tmp_path, "model=roberta", "bench.mode=attention", "bench.seq_lens=[64,128]"))
    for r in rows:
        s = r["seq_len"]
        assert r["flops_per_token"] == {"infer": 4 * h * s * d, "train": 14 * h * s * d}[r["phase"]]
        assert r.get("saved_bytes_per_token") == ({"train": 4 * (4 * h * d + h)}.get(r["phase"]))
    # LSG's work and memory per token do not grow with length: each query sees g + 3b + 2s keys, and the
    # memory-lean kernel keeps only q, k and v for backward (not the gathered blocks, not the sparse keys)
    rows = bench.run_bench(bench_cfg(tmp_path, "model=lsg_roberta", "bench.mode=attention", "bench.seq_lens=[512,1024]",
                                     "bench.tokens_per_batch=1024", "model.attention.block_size=32",
                                     "model.attention.sparse_block_size=32", "model.attention.sparsity_type=stride"))
    train = [r for r in rows if r["phase"] == "train"]
    assert train[1]["flops_per_token"] == pytest.approx(train[0]["flops_per_token"], rel=0.05)
    assert train[0]["saved_bytes_per_token"] == pytest.approx(train[1]["saved_bytes_per_token"], rel=0.01)
    assert train[0]["saved_bytes_per_token"] == train[1]["saved_bytes_per_token"] == 3 * 4 * h * d


@pytest.mark.slow  # compiles FlexAttention on the CPU
def test_flex_steps_are_counted_on_the_blocks_kernel(tmp_path):
    common = ("model=lsg_roberta", "bench.mode=attention", "bench.seq_lens=[256]", "model.attention.block_size=32",
              "model.attention.sparse_block_size=32")
    flex_rows = bench.run_bench(bench_cfg(tmp_path, *common, "model.attention.backend=flex"))
    blocks_rows = bench.run_bench(bench_cfg(tmp_path, *common, "model.attention.backend=blocks"))
    infer = flex_rows[0]
    assert infer["status"] == "ok" and infer["counted_on"] == "blocks" and "flex" in infer["attention"]
    assert infer["flops_per_token"] == blocks_rows[0]["flops_per_token"] > 0
    assert flex_rows[1]["status"] == "error" and "backward" in flex_rows[1]["error"]  # none on the CPU
    from lsgbench.report import bench_table
    _, _, notes = bench_table([{**row, "device": "cpu"} for row in flex_rows])
    assert any("counted on the blocks kernel" in note for note in notes)


def test_an_out_of_memory_point_is_a_row_and_the_sweep_goes_on(tmp_path, monkeypatch):
    real = bench._model_steps

    def flaky(cfg, length, batch, device):
        if length == 128:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(cfg, length, batch, device)

    monkeypatch.setattr(bench, "_model_steps", flaky)
    rows = bench.run_bench(bench_cfg(tmp_path, "model=roberta", "bench.seq_lens=[64,128,256]", "bench.mode=infer"))
    assert [(r["seq_len"], r["status"]) for r in rows] == [(64, "ok"), (128, "oom"), (256, "ok")]
    assert "simulated" in rows[1]["error"]


@pytest.mark.slow
def test_bench_command_writes_json(tmp_path):
    out = subprocess.run([sys.executable, "-m", "lsgbench.bench", "model=roberta", "bench.seq_lens=[64]",
                          "bench.tokens_per_batch=128", "bench.repeats=1", f"bench.out={tmp_path / 'rows'}",
                          f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (path,) = (tmp_path / "rows").glob("*.json")
    result = json.loads(path.read_text())
    assert result["device"] == "cpu" and result["env"]["torch"] and len(result["rows"]) == 2
    bad = subprocess.run([sys.executable, "-m", "lsgbench.bench", "bench.size=huge", f"hydra.run.dir={tmp_path / 'r2'}"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "bench.size='huge' is unknown" in bad.stderr


def test_the_benchmark_imports_no_training_stack():
    # A GPU box may have torch, transformers and omegaconf (+ carried hydra wheels) and nothing else.
    code = ("import sys, lsgbench.bench; print(sorted(m for m in ('datasets', 'wandb', 'rouge_score', 'evaluate', "
            "'matplotlib', 'lsgbench.pipeline', 'lsgbench.data') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-2000:]


@pytest.mark.parametrize("override, message", [
    ("+bench.anything=1", "bench.anything is not a key lsgbench reads: bench has beams, count, device, dtype,"),
    ("+bench.repeat=5", "did you mean bench.repeats?"),
    ("+anything=1", "anything is not a key lsgbench reads: the top level has bench, model, paths, seed"),
    ("+model.anything=1", "model.anything is not a key lsgbench reads"),
    ("+paths.anything=1", "paths.anything is not a key lsgbench reads"),
    ("bench.seq_lens=[1024,0]", "bench.seq_lens=[1024, 0] must list lengths >= 1"),
    ("bench.repeats=0", "bench.repeats=0 must be an integer >= 1"),
    ("bench.tokens_per_batch=abc", "bench.tokens_per_batch='abc' must be an integer >= 1"),
])
def test_every_benchmark_key_is_read_or_refused_and_numbers_checked(tmp_path, override, message):
    with pytest.raises(ConfigError) as err:
        bench.check(bench_cfg(tmp_path, override))
    assert message in str(err.value)


@pytest.mark.parametrize("kind, per_example", [("question_answering", 1), ("multiple_choice", 4), ("classification", 1)])
def test_the_head_of_any_task_kind_is_timed(tmp_path, kind, per_example):
    rows = bench.run_bench(bench_cfg(tmp_path, "model=lsg_roberta", f"bench.task_kind={kind}", "bench.seq_lens=[64]",
                                     "model.attention.block_size=16", "model.attention.sparse_block_size=8",
                                     "bench.count=false"))
    assert [(r["status"], r["head"]) for r in rows] == [("ok", kind), ("ok", kind)]  # each row names its head
    for r in rows:  # tokens/s counts every option of a multiple-choice example
        assert r["tokens_per_s"] == pytest.approx(r["batch"] * per_example * 64 / r["step_s"])
    with pytest.raises(ConfigError, match=r"bench.task_kind='multiple_choice': model 'bart' has heads for "
                                          r"\['classification', 'question_answering', 'summarization'\]"):
        bench.run_bench(bench_cfg(tmp_path, "model=bart", "bench.task_kind=multiple_choice"))


def test_causal_sdpa_counts_the_half_of_the_scores_its_kernel_computes():
    """Forward: 2 products of B H N^2 D multiply-adds; backward 2.5 times that; is_causal halves both."""
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    q = torch.randn(1, 2, 256, 16, requires_grad=True)
    counted = []
    for causal in (False, True):
        with FlopCounterMode(display=False, custom_mapping=bench.SDPA_FLOPS) as flops:
            F.scaled_dot_product_attention(q, q, q, is_causal=causal).sum().backward()
        counted.append(flops.get_total_flops())
    forward = 2 * 2 * 2 * 256 * 256 * 16
    assert counted == [forward * 3.5, forward * 3.5 / 2]


def test_the_gpu_sdpa_kernels_are_counted_from_shapes_and_halved_when_causal():
    """FlopCounterMode hands a custom mapping shapes (torch's own registry holds formulas wrapped to take tensors):
    the mapped CUDA flash kernel counts as torch's formula does, half of it under is_causal."""
    from torch.utils.flop_counter import sdpa_flop_count

    flash = torch.ops.aten._scaled_dot_product_flash_attention
    shape = (1, 2, 256, 16)
    full = sdpa_flop_count(shape, shape, shape)
    assert bench.SDPA_FLOPS[flash](shape, shape, shape, 0.0, False, out_shape=shape) == full
    assert bench.SDPA_FLOPS[flash](shape, shape, shape, 0.0, True, out_shape=shape) == full // 2
