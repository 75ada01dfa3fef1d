"""Efficiency benchmark: tokens/s, peak memory and the work each step needs, across lengths.

    python -m lsgbench.bench model=lsg_roberta bench.seq_lens=[1024,4096,16384] bench.size=tiny
    python -m lsgbench.bench -m model=roberta,lsg_roberta,local_roberta bench.mode=attention
    python -m lsgbench.bench -m model=lsg_bart,led,bigbird_pegasus bench.mode=generate bench.seq_lens=[4096,16384]

Modes: `train` (forward + backward), `infer` (forward), `both`, `attention` (one call of lsgbench's
own attention kernel at the model size's shape, infer and train) and `generate` (encoder-decoders:
exactly `bench.new_tokens` new tokens per sequence for each of `bench.beams`, greedy for 1; decoder-only
models: greedy, a `seq_len` prompt, its prefill and the decoding of the other new tokens timed apart, with the
KV cache's size). Encoder-decoders are timed with their generation head (the decoder reads `new_tokens` target
tokens), encoders with a classification head, decoders with their language-modelling head.

Tokens per batch are held constant across lengths (batch = tokens_per_batch // length, at least 1),
so figures compare per token; generation runs a fixed `bench.generate_batch`. Each point: random
weights at `bench.size`, `warmup` untimed steps, then the median of `repeats` timed steps (CUDA
events on GPU, perf counters on CPU); peak memory is the allocator's peak minus the memory held
before the step on GPU, the peak resident set minus the resident set before the step on CPU.
With `bench.count`, one more untimed step counts what is independent of the machine: FLOPs
(torch.utils.flop_counter; recomputation included) and the bytes autograd saves for backward
(parameters excluded), both per token; with the step's speed they give its FLOP/s, and its MFU: their ratio
to the device's dense matmul rate, measured in the same run (`matmul_rate`; not a datasheet's peak). Every row
also counts the kernel-launching ops of one untimed step (`kernel_ops`: what a GPU pays per launch, counted the
same on a CPU) and names the backend lsgbench's kernels ran on (`backend`); `bench.profile_dir` profiles one more
step of each row there. A point that runs out of memory or fails is a row with
`status: oom | error`, and the sweep goes on. Rows are written as JSON with the device, dtype and
library versions.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import re
import statistics
import sys
import time
from pathlib import Path

import hydra
import torch
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode, flop_registry, sdpa_backward_flop_count, sdpa_flop_count

from .attention import attention_label, flex, knobs_from_config
from .attention.knobs import backends_ran
from .checks import check_paths_and_model
from .config import attention_shorthand, config_dir, file_keys
from .errors import ConfigError, integer, raise_all, unknown_keys
from .measure import (BusyElsewhere, cpu_peak_rss_mb, cpu_rss_mb, kernel_ops, profile_step, reset_cpu_peak,
                      synchronize)
from .kinds import KINDS
from .models import FAMILIES, SIZES, build_model
from .record import environment, new_bench_result, new_run_id, write_json_atomic

MODES = ("train", "infer", "both", "attention", "generate")
TOKENIZER_TEXT = ["the quick brown fox jumps over the lazy dog . " * 200]


def _phases(bench, decoder: bool = False) -> tuple[str, ...]:
    if bench.mode == "generate":
        if decoder:
            return ("greedy",)
        return tuple("greedy" if beams == 1 else f"beam{beams}" for beams in bench.beams)
    return {"train": ("train",), "infer": ("infer",)}.get(bench.mode, ("infer", "train"))


def _bench_kind(bench, family, model_name: str):
    """The task kind whose head is timed: bench.task_kind, else the family's main head (an encoder-decoder's
    generation head, an encoder's classifier)."""
    name = bench.task_kind or next(iter(family.heads))
    if name not in KINDS or name not in family.heads:
        raise ConfigError(f"bench.task_kind={name!r}: model {model_name!r} has heads for {sorted(family.heads)}")
    return KINDS[name]


class Steps:
    """What one benchmark point runs: `forward()` returns what training backpropagates from; `phases`
    maps each phase to its timed step; `tokens[phase]` is what a step's tokens/s counts."""

    def __init__(self, forward, phases: dict, tokens: dict, attention: dict, parameters=()):
        self.forward, self.phases, self.tokens, self.attention = forward, phases, tokens, attention
        self.parameters = {p.untyped_storage().data_ptr() for p in parameters}


def _family_and_kind(cfg):
    """The model's family and the task kind whose head is timed; every length would refuse the same mistakes."""
    bench, model_cfg = cfg.bench, cfg.model
    family = FAMILIES.get(model_cfg.family)
    if family is None:
        raise ConfigError(f"model.family={model_cfg.family!r} is unknown; choose one of {sorted(FAMILIES)}")
    kind = _bench_kind(bench, family, model_cfg.name)
    if bench.mode == "generate" and not (kind.generates or _continues_text(family, kind)):
        raise ConfigError(f"bench.mode=generate times generation; model {model_cfg.name!r} (family "
                          f"{model_cfg.family!r}) has no decoder" + (" here" if family.encoder_decoder else "")
                          + (" with the causal_lm head" if family.decoder_only else ""))
    return family, kind


def _continues_text(family, kind) -> bool:
    """A decoder-only model with its language-modelling head: it generates by continuing its prompt."""
    return family.decoder_only and "causal_lm" in family.heads and kind is KINDS["causal_lm"]


def _model_steps(cfg, length: int, batch: int, device: torch.device) -> Steps:
    bench, model_cfg = cfg.bench, cfg.model.copy()
    family, kind = _family_and_kind(cfg)
    model_cfg.init, model_cfg.size, model_cfg.max_length = "random", bench.size, length
    if not knobs_from_config(model_cfg.attention).converted:  # random weights: any length goes
        model_cfg.max_positions = max(model_cfg.max_positions, length)
    task = OmegaConf.create(kind.bench_task(bench.new_tokens))
    built = build_model(model_cfg, task, TOKENIZER_TEXT, Path(cfg.paths.cache_dir).expanduser())
    model, vocab = built.model.to(device), len(built.tokenizer)
    inputs, input_tokens = kind.bench_batch(batch, length, vocab, bench.new_tokens, device)
    if built.family.global_attention:
        inputs["global_attention_mask"] = kind.global_mask(inputs, [])
    targets = {t: inputs.pop(t) for t in kind.TARGETS}

    def forward():
        return model.train()(**inputs, **targets).loss

    def infer():
        with torch.inference_mode():
            model.eval()(**inputs, **targets)

    def train():
        forward().backward()

    def generate(beams: int):
        def step():
            with torch.inference_mode():
                out = model.eval().generate(**inputs, num_beams=beams, do_sample=False, max_new_tokens=bench.new_tokens,
                                            min_new_tokens=bench.new_tokens)
            if out.shape[1] != bench.new_tokens + 1:  # + the decoder start token
                raise RuntimeError(f"generated {out.shape[1] - 1} tokens, not bench.new_tokens={bench.new_tokens}")
        return step

    if bench.mode == "generate" and _continues_text(family, kind):
        phases = {"greedy": _Continuation(model, inputs["input_ids"], bench.new_tokens, device)}
        tokens = dict.fromkeys(phases, batch * bench.new_tokens)
    elif bench.mode == "generate":
        phases = {phase: generate(beams) for phase, beams in zip(_phases(bench), bench.beams)}
        tokens = dict.fromkeys(phases, batch * bench.new_tokens)  # generated tokens
    else:
        phases = {"infer": infer, "train": train}
        tokens = dict.fromkeys(phases, input_tokens)
    return Steps(forward, phases, tokens, built.attention, model.parameters())


class _Continuation:
    """A decoder-only model's greedy continuation of a prompt by exactly `new_tokens` tokens, as a step: the prefill
    (the prompt through the model, the first new token: time to first token) and the decoding of the others, one
    forward each with the KV cache, timed apart; `timings` holds (prefill s, decode s, cache bytes) per call."""

    def __init__(self, model, ids, new_tokens: int, device):
        self.model, self.ids, self.new_tokens, self.device, self.timings = model, ids, new_tokens, device, []
        # transformers renamed past_key_values to cache (5.2x); the GPU machine's may be older
        self.cache_arg = "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"

    def __call__(self):
        with torch.inference_mode():
            synchronize(self.device)
            start = time.perf_counter()
            out = self.model.eval()(input_ids=self.ids, use_cache=True)
            token = out.logits[:, -1:].argmax(-1)
            synchronize(self.device)
            prefilled = time.perf_counter()
            for _ in range(self.new_tokens - 1):
                out = self.model(input_ids=token, use_cache=True, **{self.cache_arg: out[self.cache_arg]})
                token = out.logits[:, -1:].argmax(-1)
            synchronize(self.device)
            self.timings.append((prefilled - start, time.perf_counter() - prefilled, cache_bytes(out[self.cache_arg])))
            self.bounded = all(hasattr(layer, "sliding_window") for layer in out[self.cache_arg].layers)

    def figures(self, calls: int) -> dict:
        """The medians of the last `calls` calls (the timed ones)."""
        prefill, decode, cached = (statistics.median(t[i] for t in self.timings[-calls:]) for i in range(3))
        batch = self.ids.shape[0]
        return {"time_to_first_token_s": prefill, "decode_tokens_per_s": batch * (self.new_tokens - 1) / decode
                if self.new_tokens > 1 else None, "kv_cache_mb": cached / 2**20, "kv_cache_bounded": self.bounded}


def cache_bytes(cache) -> int:
    """What a transformers KV cache holds: the bytes of every layer's keys and values (a sliding-window layer keeps
    only its window)."""
    return sum(t.nbytes for layer in cache.layers for t in (layer.keys, layer.values) if isinstance(t, torch.Tensor))


def matmul_rate(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> float:
    """The device's dense matrix-product rate in FLOP/s, measured now: the median of n x n products (n = 8,192 on
    CUDA, 1,024 on the CPU) in the benchmark's dtype. The ceiling MFU is read against, on any machine."""
    n = 8192 if device.type == "cuda" else 1024
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    times = []
    for i in range(repeats + 1):  # the first warms up
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        if i:
            times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def _attention_steps(cfg, length: int, batch: int, device: torch.device, dtype) -> Steps:
    knobs = knobs_from_config(cfg.model.attention)
    _, hidden, heads, _ = SIZES[cfg.bench.size]
    if not hasattr(knobs, "attend"):
        raise ConfigError(f"bench.mode=attention times lsgbench's own kernels; {knobs.name} attention runs inside "
                          f"its Hugging Face model: use bench.mode=train, infer or both")
    q, k, v = (torch.randn(batch, heads, length, hidden // heads, device=device, dtype=dtype, requires_grad=True)
               for _ in range(3))

    def forward(*qkv):  # the call the converted models make
        return knobs.attend(*(qkv or (q, k, v)), None, None, 0.0).sum()

    def infer():
        with torch.inference_mode():
            forward(q.detach(), k.detach(), v.detach())  # inputs as a model's inference has them: no grad

    def train():
        forward().backward()

    return Steps(forward, {"infer": infer, "train": train}, dict.fromkeys(("infer", "train"), batch * length),
                 knobs.to_dict())


def measure(step, device: torch.device, warmup: int, repeats: int) -> tuple[float, float, float | None]:
    """(median seconds per step, peak memory in MB above what was held before the first step, the share of
    the CPUs other processes used meanwhile). The peak is taken from the warm-up on: allocators keep
    freed memory, so later steps reuse it."""
    synchronize(device)
    busy = BusyElsewhere().start()
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
    return statistics.median(times), peak, busy.stop()


def _causal_halves(packet, count):
    """`count` for an SDPA kernel, halved when it runs with is_causal: its fused kernels skip the masked half of the
    scores (torch counts it whole, which put causal full attention above the matmul rate: MFU > 1)."""
    schema = next(iter(packet._schemas.values())) if hasattr(packet, "_schemas") else packet.default._schema
    where = [a.name for a in schema.arguments].index("is_causal")

    def counted(*args, out_shape=None, **kwargs):
        causal = kwargs.get("is_causal", args[where] if len(args) > where else False)
        return count(*args, out_shape=out_shape, **kwargs) // (2 if causal else 1)
    return counted


def _sdpa_counts() -> dict:
    """torch counts SDPA's GPU kernels but not its CPU one: the same formula for it (the shapes are its first
    arguments); every SDPA kernel's count halved under is_causal."""
    cpu = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
           lambda query, key, value, *args, out_shape=None, **kwargs: sdpa_flop_count(query, key, value),
           torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward:
           lambda grad, query, key, value, *args, out_shape=None, **kwargs:
           sdpa_backward_flop_count(grad, query, key, value)}
    # torch's registry holds its formulas wrapped to take tensors; a custom mapping is handed shapes: the raw formula
    gpu = {op: getattr(count, "__wrapped__", count) for op, count in flop_registry.items() if "scaled_dot_product" in str(op)}
    return {op: _causal_halves(op, count) for op, count in {**gpu, **cpu}.items()}


SDPA_FLOPS = _sdpa_counts()


def count(steps: Steps, phase: str) -> dict:
    """FLOPs per token of one step of `phase`, and for training the bytes autograd saves for backward
    per token (each storage once; the weights, held anyway, left out)."""
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in steps.parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    tokens = steps.tokens[phase]
    with FlopCounterMode(display=False, custom_mapping=SDPA_FLOPS) as flops:
        if phase == "train":
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
                loss = steps.forward()
            loss.backward()
        else:
            steps.phases[phase]()
    counted = {"flops_per_token": flops.get_total_flops() / tokens}
    if phase == "train":
        counted["saved_bytes_per_token"] = sum(saved.values()) / tokens
    return counted


def _steps(cfg, length: int, batch: int, device: torch.device) -> Steps:
    if cfg.bench.mode == "attention":
        dtype = torch.bfloat16 if cfg.bench.dtype == "bf16" else torch.float32
        return _attention_steps(cfg, length, batch, device, dtype)
    return _model_steps(cfg, length, batch, device)


def _count_on_blocks(cfg, length: int, batch: int, device: torch.device, phase: str) -> dict:
    """The FLOPs of a step that ran FlexAttention, counted on the blocks kernel: compiled flex cannot run
    under torch's FLOP counter, and both kernels do the same attention. (Flex computes whole 128 x 128
    tiles, so its own work is somewhat larger.) What flex saves for backward is its own: not counted."""
    on_blocks = copy.deepcopy(cfg)
    on_blocks.model.attention.backend = "blocks"
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # later lengths' weights unchanged
        counted = count(_steps(on_blocks, length, batch, device), phase)
    counted.pop("saved_bytes_per_token", None)
    return {**counted, "counted_on": "blocks"}


def _launches(step, device, autocast, profile_dir, name: str) -> dict:
    """The kernel ops of one more untimed step (on a GPU each is a launch) and, with a profile_dir, a profile of
    another; a failure loses only its own figure."""
    figures = {}
    try:
        with autocast:
            figures["kernel_ops"] = kernel_ops(step)
    except Exception as err:  # noqa: BLE001
        figures["kernel_ops_error"] = f"{type(err).__name__}: {err}"[:200]
    if profile_dir:
        path = Path(profile_dir) / (re.sub(r"[^\w.=-]+", "_", name) + ".txt")
        try:
            with autocast:
                figures["profile"] = profile_step(step, device, path)
        except Exception as err:  # noqa: BLE001
            figures["profile_error"] = f"{type(err).__name__}: {err}"[:200]
    return figures


def _error_row(row: dict, err: BaseException) -> dict:
    if isinstance(err, torch.OutOfMemoryError):
        return {**row, "status": "oom", "error": str(err)[:300]}
    return {**row, "status": "error", "error": f"{type(err).__name__}: {err}"[:300]}


def check(cfg) -> None:
    """One ConfigError naming every unknown key and every bad setting of the benchmark's config."""
    bench = cfg.bench
    problems = unknown_keys(cfg, "", [*file_keys("bench.yaml"), "paths", "model"])
    problems += check_paths_and_model(cfg)
    problems += unknown_keys(bench, "bench", file_keys("bench.yaml", section="bench"))
    choices = {"mode": MODES, "dtype": ("fp32", "bf16"), "size": tuple(SIZES), "device": ("auto", "cpu", "cuda"),
               "task_kind": (None, *KINDS)}
    problems += [f"bench.{key}={bench.get(key)!r} is unknown; choose one of {list(allowed)}"
                 for key, allowed in choices.items() if bench.get(key) not in allowed]
    lengths, beams = bench.get("seq_lens"), bench.get("beams")
    if not (OmegaConf.is_list(lengths) and lengths and all(not integer("", n, 1) for n in lengths)):
        problems.append(f"bench.seq_lens={lengths!r} must list lengths >= 1, e.g. [1024,4096]")
    if bench.get("mode") == "generate" and not (OmegaConf.is_list(beams) and beams and
                                                 all(not integer("", b, 1) for b in beams)):
        problems.append(f"bench.beams={beams!r} must list beam counts >= 1 (1: greedy)")
    for key, minimum in (("tokens_per_batch", 1), ("new_tokens", 1), ("generate_batch", 1), ("warmup", 0),
                         ("repeats", 1)):
        problems += integer(f"bench.{key}", bench.get(key), minimum)
    problems += integer("seed", cfg.get("seed"), 0)
    raise_all(problems)


def run_bench(cfg) -> list[dict]:
    bench = cfg.bench
    check(cfg)
    device = torch.device("cuda" if bench.device == "auto" and torch.cuda.is_available() else
                          "cpu" if bench.device == "auto" else bench.device)
    bf16 = bench.dtype == "bf16"
    family, kind = _family_and_kind(cfg) if bench.mode != "attention" else (None, None)
    head = kind and kind.name  # the task kind whose head is timed
    phases = _phases(bench, decoder=family is not None and _continues_text(family, kind))
    rate = matmul_rate(device, torch.bfloat16 if bf16 else torch.float32) if bench.count else None  # MFU's ceiling
    torch.manual_seed(cfg.seed)
    rows = []
    print(HEADER, flush=True)
    for length in bench.seq_lens:
        batch = bench.generate_batch if bench.mode == "generate" else max(1, bench.tokens_per_batch // length)
        base = {"model": cfg.model.name, "attention": attention_label(OmegaConf.to_container(cfg.model.attention)),
                "size": bench.size, "seq_len": length, "batch": batch, "tokens": batch * length, "dtype": bench.dtype,
                "bench_mode": bench.mode, "head": head}
        try:
            steps = _steps(cfg, length, batch, device)
        except Exception as err:  # noqa: BLE001 - an unsupported point is a row, not the end of the sweep
            rows += [_error_row({**base, "phase": phase}, err) for phase in phases]
            print(_line(rows[-1]), flush=True)
            continue
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 and bench.mode != "attention" \
            else contextlib.nullcontext()
        for phase in phases:
            row = {**base, "phase": phase, "attention": attention_label(steps.attention)}
            flex_calls = flex.calls
            backends_ran()
            try:
                with autocast:
                    seconds, peak, busy = measure(steps.phases[phase], device, bench.warmup, bench.repeats)
                row.update(status="ok", step_s=seconds, tokens_per_s=steps.tokens[phase] / seconds, peak_mem_mb=peak,
                           busy_elsewhere=busy)
                if ran := backends_ran():  # lsgbench's kernels: which backend the step ran on
                    row["backend"] = ran["backend"]
                if isinstance(steps.phases[phase], _Continuation):  # of the timed steps: before any other
                    row.update(steps.phases[phase].figures(bench.repeats))
            except Exception as err:  # noqa: BLE001
                row = _error_row(row, err)
            if row["status"] == "ok":
                row.update(_launches(steps.phases[phase], device, autocast, bench.profile_dir,
                                     f"{row['model']}_{row['attention']}_{length}_{phase}"))
            if bench.count and row["status"] == "ok":
                try:  # a step that cannot be counted keeps its timing
                    with autocast:
                        if flex.calls > flex_calls:
                            row.update(_count_on_blocks(cfg, length, batch, device, phase))
                        else:
                            row.update(count(steps, phase))
                except Exception as err:  # noqa: BLE001
                    row["count_error"] = f"{type(err).__name__}: {err}"[:200]
                if row.get("flops_per_token"):
                    flops_per_s = row["flops_per_token"] * row["tokens_per_s"]
                    row.update(flops_per_s=flops_per_s, matmul_rate=rate, mfu=flops_per_s / rate)
            rows.append(row)
            print(_line(row), flush=True)
        del steps
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


LINE = "{:<16} {:<40} {:>7} {:>5} {:<6} {:>9} {:>9} {:>8} {:>8} {:>9} {:>12} {:>6}"
HEADER = LINE.format("model", "attention", "seq_len", "batch", "phase", "step ms", "tokens/s", "peak MB", "ops",
                     "MFLOP/tok", "saved KB/tok", "MFU %")


def _line(row: dict) -> str:
    start = (row["model"], row.get("attention", "?")[:40], row["seq_len"], row["batch"], row["phase"])
    if row["status"] != "ok":
        return LINE.format(*start, "", "", "", "", "", "", "").rstrip() + f"  {row['status']}: {row.get('error', '')}"
    flops, saved, mfu = row.get("flops_per_token"), row.get("saved_bytes_per_token"), row.get("mfu")
    line = LINE.format(*start, f"{row['step_s'] * 1000:.1f}", f"{row['tokens_per_s']:.0f}", f"{row['peak_mem_mb']:.1f}",
                       row.get("kernel_ops", ""), "" if flops is None else f"{flops / 1e6:.2f}",
                       "" if saved is None else f"{saved / 1024:.1f}",
                       "" if mfu is None else f"{100 * mfu:.1f}")
    if "time_to_first_token_s" in row:
        decode = row["decode_tokens_per_s"]
        line += (f"  first token {row['time_to_first_token_s'] * 1000:.1f} ms, decode "
                 f"{'—' if decode is None else f'{decode:.0f}'} tok/s, KV cache {row['kv_cache_mb']:.2f} MB "
                 f"({'bounded by its window' if row['kv_cache_bounded'] else 'grows with the past'})")
    return line


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
