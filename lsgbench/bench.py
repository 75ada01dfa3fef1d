"""Efficiency benchmark: tokens/s and peak memory of a model (or its attention alone) across lengths.

    python -m lsgbench.bench model=lsg_roberta bench.seq_lens=[1024,4096,16384] bench.size=tiny
    python -m lsgbench.bench -m model=roberta,lsg_roberta,local_roberta bench.mode=attention

Tokens per batch are held constant across lengths (batch = tokens_per_batch // length, at least 1),
so figures compare per token. Each point: random weights at `bench.size`, `warmup` untimed steps,
then the median of `repeats` timed steps (CUDA events on GPU, perf counters on CPU); peak memory
is the allocator's peak minus the memory held before the step on GPU, the peak resident set minus
the resident set before the step on CPU. A point that runs out of memory or fails is a row with
`status: oom | error`, and the sweep goes on. Rows are written as JSON with the device, dtype and
library versions.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from pathlib import Path

import hydra
import torch
from omegaconf import OmegaConf

from .errors import ConfigError
from .config import attention_shorthand, config_dir
from .measure import cpu_peak_rss_mb, cpu_rss_mb, reset_cpu_peak, synchronize
from .attention import attention_label, knobs_from_config
from .models import SIZES, build_model
from .record import environment, new_bench_result, new_run_id, write_json_atomic

MODES = {"train": ("train",), "infer": ("infer",), "both": ("infer", "train"), "attention": ("infer", "train")}
# A stand-in classification task for building models (the benchmark feeds random token ids).
BENCH_TASK = OmegaConf.create({"name": "bench", "kind": "classification", "label_names": ["a", "b"],
                               "max_source_length": 512, "max_target_length": None})
TOKENIZER_TEXT = ["the quick brown fox jumps over the lazy dog . " * 200]


def measure(step, device: torch.device, warmup: int, repeats: int) -> tuple[float, float]:
    """(median seconds per step, peak memory in MB above what was held before the first step).
    The peak is taken from the warm-up on: allocators keep freed memory, so later steps reuse it."""
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        reset_cpu_peak()
        base = cpu_rss_mb()
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end) / 1000)
        else:
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
    peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20 if device.type == "cuda" else cpu_peak_rss_mb() - base
    return statistics.median(times), peak


def _model_steps(cfg, length: int, batch: int, device: torch.device):
    model_cfg = cfg.model.copy()
    model_cfg.init, model_cfg.size, model_cfg.max_length = "random", cfg.bench.size, length
    if not knobs_from_config(model_cfg.attention).converted:  # random weights: any length goes
        model_cfg.max_positions = max(model_cfg.max_positions, length)
    built = build_model(model_cfg, BENCH_TASK, TOKENIZER_TEXT, Path(cfg.paths.cache_dir).expanduser())
    model = built.model.to(device)
    ids = torch.randint(5, len(built.tokenizer), (batch, length), device=device)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if built.family.global_first_token:
        inputs["global_attention_mask"] = torch.zeros_like(ids)
        inputs["global_attention_mask"][:, 0] = 1
    labels = torch.zeros(batch, dtype=torch.long, device=device)

    def infer():
        with torch.inference_mode():
            model.eval()(**inputs)

    def train():
        model.train()(**inputs, labels=labels).loss.backward()

    return {"infer": infer, "train": train}, built.attention


def _attention_steps(cfg, length: int, batch: int, device: torch.device, dtype):
    knobs = knobs_from_config(cfg.model.attention)
    _, hidden, heads, _ = SIZES[cfg.bench.size]
    if not hasattr(knobs, "attend"):
        raise ConfigError(f"bench.mode=attention times lsgbench's own kernels; {knobs.name} attention runs inside "
                          f"its Hugging Face model: use bench.mode=train, infer or both")
    fn = lambda q, k, v: knobs.attend(q, k, v, None, None, 0.0)  # noqa: E731 - the call the converted models make
    q, k, v = (torch.randn(batch, heads, length, hidden // heads, device=device, dtype=dtype, requires_grad=True)
               for _ in range(3))

    def infer():
        with torch.inference_mode():
            fn(q, k, v)

    def train():
        fn(q, k, v).sum().backward()

    return {"infer": infer, "train": train}, knobs.to_dict()


def run_bench(cfg) -> list[dict]:
    bench = cfg.bench
    if bench.mode not in MODES:
        raise ConfigError(f"bench.mode={bench.mode!r} is unknown; choose one of {list(MODES)}")
    if bench.dtype not in ("fp32", "bf16"):
        raise ConfigError(f"bench.dtype={bench.dtype!r} is unknown; choose fp32 or bf16")
    if bench.size not in SIZES:
        raise ConfigError(f"bench.size={bench.size!r} is unknown; choose one of {list(SIZES)}")
    device = torch.device("cuda" if bench.device == "auto" and torch.cuda.is_available() else
                          "cpu" if bench.device == "auto" else bench.device)
    bf16 = bench.dtype == "bf16"
    torch.manual_seed(cfg.seed)
    rows = []
    print(HEADER, flush=True)
    for length in bench.seq_lens:
        batch = max(1, bench.tokens_per_batch // length)
        base = {"model": cfg.model.name, "attention": attention_label(OmegaConf.to_container(cfg.model.attention)), "size": bench.size,
                "seq_len": length, "batch": batch, "tokens": batch * length, "dtype": bench.dtype,
                "bench_mode": bench.mode}
        steps, attention = None, dict(cfg.model.attention)
        try:
            if bench.mode == "attention":
                steps, attention = _attention_steps(cfg, length, batch, device, torch.bfloat16 if bf16 else torch.float32)
            else:
                steps, attention = _model_steps(cfg, length, batch, device)
        except torch.OutOfMemoryError as err:
            rows += [{**base, "phase": p, "status": "oom", "error": str(err)[:300]} for p in MODES[bench.mode]]
        except Exception as err:  # noqa: BLE001 - an unsupported point is a row, not the end of the sweep
            rows += [{**base, "phase": p, "status": "error", "error": f"{type(err).__name__}: {err}"[:300]}
                     for p in MODES[bench.mode]]
        if not steps:
            print(_line(rows[-1]), flush=True)
        for phase in MODES[bench.mode] if steps else ():
            row = {**base, "phase": phase, "attention": attention_label(attention)}
            autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 and bench.mode != "attention" \
                else contextlib.nullcontext()
            try:
                with autocast:
                    seconds, peak = measure(steps[phase], device, bench.warmup, bench.repeats)
                row.update(status="ok", step_s=seconds, tokens_per_s=batch * length / seconds, peak_mem_mb=peak)
            except torch.OutOfMemoryError as err:
                row.update(status="oom", error=str(err)[:300])
            except Exception as err:  # noqa: BLE001
                row.update(status="error", error=f"{type(err).__name__}: {err}"[:300])
            rows.append(row)
            print(_line(row), flush=True)
        steps = None
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


LINE = "{:<16} {:<44} {:>7} {:>5} {:<6} {:>10} {:>11} {:>9}"
HEADER = LINE.format("model", "attention", "seq_len", "batch", "phase", "step ms", "tokens/s", "peak MB")


def _line(row: dict) -> str:
    start = (row["model"], row.get("attention", "?")[:44], row["seq_len"], row["batch"], row["phase"])
    if row["status"] != "ok":
        return LINE.format(*start, "", "", "")[:-20].rstrip() + f"  {row['status']}: {row.get('error', '')}"
    return LINE.format(*start, f"{row['step_s'] * 1000:.1f}", f"{row['tokens_per_s']:.0f}", f"{row['peak_mem_mb']:.1f}")


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="bench")
def _hydra_main(cfg) -> None:
    env = environment()
    device = env["gpu"] or "cpu"
    try:
        rows = run_bench(cfg)
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    result = new_bench_result(device, env, OmegaConf.to_container(cfg, resolve=True), rows)
    path = Path(cfg.bench.out) / f"{new_run_id('bench', cfg.model.name)}.json"
    write_json_atomic(path, result)
    print(f"wrote {len(rows)} rows to {path}")


def main() -> None:
    sys.argv = [sys.argv[0], *map(attention_shorthand, sys.argv[1:])]
    _hydra_main()


if __name__ == "__main__":
    main()
