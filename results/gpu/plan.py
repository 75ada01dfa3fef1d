"""The GPU verification, step by step, most important first, in one process (Python, torch and CUDA start once).
results/gpu/run.sh installs what is missing and runs it:

    python results/gpu/plan.py OUT [--device cuda|cpu] [--quick] [--resume] [--schedule]

The headline part fits one lease: base encoders (12 x 768, bf16, 16,384 tokens per batch) training at 16k, then
4k, then 1k tokens: RoBERTa (SDPA), HF Longformer, HF BigBird, LSG-RoBERTa (b = s = 128, f = 4, pooling, g = 1)
on flex and on blocks, local sliding (w = 256) on flex, each 16k row with a profile (OUT/profiles). Then the base
decoder (full causal SDPA against causal LSG and local, flex and blocks), the kernel check, generation and the
rest. Every step has a time limit, printed first as the schedule; a step that fails or runs out is logged and the
next one runs; report and targets always run. With --resume, steps finished in OUT (OUT/steps/NAME.done) are not
run again, so a second lease completes what the first could not.

The LSG and local rows set model.attention.dropout=0: FlexAttention has no dropout, and the kernels are compared
on the same work (the RoBERTa, Longformer and BigBird rows keep their backbones' attention dropout of 0.1).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# {block}, {window}, {decoder_window}: 128, 256, 512 (the dry run: 32, 64, 64, for its short lengths)
LSG = ["model.attention.block_size={block}", "model.attention.sparse_block_size={block}",
       "model.attention.sparsity_factor=4", "model.attention.sparsity_type=pooling"]
LOCAL = ["model.attention.mode=sliding", "model.attention.window={window}"]
DECODER_LOCAL = ["attention=local", "model.attention.window={decoder_window}"]
NO_DROPOUT = ["model.attention.dropout=0"]


@dataclass
class Step:
    name: str
    seconds: int                   # its time limit on an H100 (the dry run: QUICK_SECONDS)
    points: list = field(default_factory=list)   # benchmark points: each a list of overrides, one model
    command: list | None = None    # or a command, run as a subprocess
    headline: bool = False
    what: str = ""


def encoders(length: str, profile: bool) -> list[list[str]]:
    """The encoder rows the seed paper compares, training at one length."""
    at = [f"bench.seq_lens=[{length}]", "bench.mode=train", *(["bench.profile_dir={out}/profiles"] if profile else [])]
    return [[*at, "model=roberta"], [*at, "model=longformer"], [*at, "model=bigbird"],
            [*at, "model=lsg_roberta", *LSG, *NO_DROPOUT, "model.attention.backend=flex"],
            [*at, "model=lsg_roberta", *LSG, *NO_DROPOUT, "model.attention.backend=blocks"],
            [*at, "model=local_roberta", *LOCAL, *NO_DROPOUT, "model.attention.backend=flex"]]


def decoders(length: str) -> list[list[str]]:
    at = [f"bench.seq_lens=[{length}]", "bench.mode=train", "model=llama"]
    return [[*at], *[[*at, "attention=lsg", *LSG, f"model.attention.backend={b}"] for b in ("flex", "blocks")],
            *[[*at, *DECODER_LOCAL, f"model.attention.backend={b}"] for b in ("flex", "blocks")]]


def plan(lengths: dict) -> list[Step]:
    long, mid, short = lengths["long"], lengths["mid"], lengths["short"]
    python = sys.executable
    generate = ["bench.mode=generate", f"bench.seq_lens=[{mid},{long}]", "bench.new_tokens={new}"]
    short_and_long = [f"bench.seq_lens=[{short},{long}]", "bench.mode=both"]
    step = ["bench.mode=train", f"bench.seq_lens=[{short},{mid},{long}]"]
    return [
        Step("environment", 15, headline=True, what="device and library versions", command=[
            python, "-c", "import json, sys, lsgbench.record as r; env = r.environment(); env['device'] = env['gpu'] "
                          "or 'cpu'; json.dump(env, open(sys.argv[1], 'w'), indent=1)", "{out}/environment.json"]),
        Step("encoder_16k", 150, encoders(long, profile=True), headline=True,
             what="RoBERTa SDPA, Longformer, BigBird, LSG flex and blocks, local flex: train at 16k, profiled"),
        Step("encoder_4k", 90, encoders(mid, profile=False), headline=True, what="the same at 4k"),
        Step("encoder_1k", 60, encoders(short, profile=False), headline=True, what="the same at 1k"),
        Step("decoder_16k", 120, decoders(long), what="base Llama: full causal SDPA, LSG and local on flex and blocks"),
        Step("decoder_1k", 45, decoders(short), what="the same at 1k"),
        Step("kernel_check", 90, what="every kernel against its float64 reference, fp32 and bf16", command=[
            python, "-m", "lsgbench.kernel_check", "--device", "{device}", "--out", "{out}", *lengths["kernel_check"]]),
        Step("generate", 120, what="encoder-decoder generation at 4k and 16k, greedy and beam 4", points=[
            [*generate, "bench.beams=[1,4]", f"model={m}"]
            for m in ("bart", "lsg_bart", "led", "bigbird_pegasus", "longt5_tglobal", "pegasus_x")]),
        Step("decoder_generate", 90, what="decoder generation: prefill, decoding, KV cache", points=[
            [*generate, *model] for model in (
                ["model=llama"], ["model=mistral"], ["model=gemma3"],
                *[["model=llama", "attention=lsg", *LSG, f"model.attention.num_global_tokens={g}"] for g in (1, 0)],
                ["model=llama", *DECODER_LOCAL])]),
        Step("decoder_peers", 60, what="Mistral, Gemma-2, Gemma-3", points=[
            [*short_and_long, f"model={m}"] for m in ("mistral", "gemma2", "gemma3")]),
        Step("modernbert", 60, what="ModernBERT, its own attention and LSG", points=[
            [*short_and_long, "model=modernbert", *knobs] for knobs in ([], ["attention=lsg", *LSG, *NO_DROPOUT])]),
        Step("attention", 45, what="one attention call: SDPA, LSG and local on both backends", points=[
            ["bench.mode=attention", f"bench.seq_lens=[{short},{mid},{long}]", *knobs] for knobs in (
                ["model=roberta"],
                *[["model=lsg_roberta", *LSG, f"model.attention.backend={b}"] for b in ("blocks", "flex")],
                *[["model=local_roberta", *LOCAL, f"model.attention.backend={b}"] for b in ("blocks", "flex")])]),
        Step("encoder_infer", 60, what="the encoders' inference at 512, 1k, 16k", points=[
            [f"bench.seq_lens=[{lengths['tiny']},{short},{long}]", "bench.mode=infer", *point[2:]]
            for point in encoders(long, profile=False)]),
        Step("pytest_gpu", 120, what="the gpu-marked tests", command=[
            python, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", str(ROOT / "tests")]),
        Step("pipeline", 60, what="a short run of the pipeline on the GPU", command=[
            python, "-m", "lsgbench", "experiment=quickstart", "trainer=default", "trainer.device={device}",
            "model=lsg_roberta", "model.max_length=1024", "model.attention.block_size=64",
            "model.attention.sparse_block_size=64", "task.synthetic.doc_words=800", *lengths["pipeline"],
            "paths.store_dir={out}/runs", "paths.cache_dir={out}/cache", "hydra.run.dir={out}/hydra/pipeline"]),
        Step("question_answering", 60, what="a QA training step", points=[
            [*step, "bench.task_kind=question_answering", f"model={m}", *k]
            for m, k in (("roberta", []), ("longformer", []), ("bigbird", []), ("lsg_roberta", [*LSG, *NO_DROPOUT]))]),
        Step("masked_lm", 60, what="a masked-LM training step", points=[
            [*step, "bench.task_kind=masked_lm", f"model={m}", *k]
            for m, k in (("roberta", []), ("longformer", []), ("bigbird", []), ("local_roberta", [*LOCAL, *NO_DROPOUT]),
                         ("lsg_roberta", [*LSG, *NO_DROPOUT]))]),
    ]


FINAL = [Step("report", 60, what="tables and plots of every row", command=[
              sys.executable, "-m", "lsgbench.report", "{out}/bench", "{out}/runs", "--format", "md,csv",
              "--out", "{out}/report"]),
         Step("targets", 30, what="the targets, measured", command=[
             sys.executable, str(ROOT / "results/gpu/targets.py"), "{out}/bench", "{out}/targets.md"])]
INSTALL_S = 45      # run.sh's pip install of the carried wheels, before the first step
QUICK_SECONDS = 240  # each step's limit in the CPU dry run (tiny shapes, a slow machine)
LENGTHS = {False: dict(long="16384", mid="4096", short="1024", tiny="512", kernel_check=[], pipeline=[]),
           True: dict(long="512", mid="256", short="128", tiny="64", kernel_check=["--quick"],
                      pipeline=["task.synthetic.n_train=64", "task.synthetic.n_test=32",
                                "trainer.args.num_train_epochs=1"])}


def common(args, out: Path) -> list[str]:
    """Overrides every benchmark point takes: the device, the size and dtype, the repeats, where things go."""
    if args.quick:
        shape = ["bench.size=tiny", "bench.tokens_per_batch=512", "bench.dtype=fp32"]
    else:
        dtype = "bf16" if args.device == "cuda" else "fp32"
        shape = ["bench.size=base", "bench.tokens_per_batch=16384", f"bench.dtype={dtype}"]
    return [f"bench.device={args.device}", *shape, "bench.warmup=1", "bench.repeats=3", "bench.count=false",
            f"paths.cache_dir={out}/cache"]


class StepLog:
    """What in-process steps print (their loggers' handlers included, which keep the stream they were made with)
    goes to the current step's log."""

    def __init__(self):
        self.file = sys.__stdout__

    def write(self, text):
        return self.file.write(text)

    def flush(self):
        self.file.flush()


STEP_LOG = StepLog()


class OutOfTime(BaseException):
    """A step's time limit: a BaseException, so that the benchmark's per-row error handling does not swallow it."""


def _alarm(signum, frame):
    raise OutOfTime


def run_points(step: Step, args, out: Path) -> None:
    """Each point benchmarked in this process, its rows written to OUT/bench/STEP/ as `lsgbench.bench` writes them."""
    from hydra import compose, initialize_config_dir

    from lsgbench.bench import run_bench
    from lsgbench.config import attention_shorthand, config_dir
    from lsgbench.record import environment, new_bench_result, new_run_id, write_json_atomic

    env = environment()
    for stale in (out / "bench" / step.name).glob("*.json"):  # a step cut short earlier starts again whole
        stale.unlink()
    sizes = dict(new=4, block=32, window=64, decoder_window=64) if args.quick else \
        dict(new=64, block=128, window=256, decoder_window=512)
    failed = 0
    for point in step.points:
        overrides = [attention_shorthand(o.format(out=out, **sizes)) for o in (*common(args, out), *point)]
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose("bench", overrides=overrides)
        rows = run_bench(cfg)
        failed += sum(r["status"] != "ok" for r in rows)
        result = new_bench_result(env["gpu"] or "cpu", env, _plain(cfg), rows)
        write_json_atomic(out / "bench" / step.name / f"{new_run_id('bench', cfg.model.name)}.json", result)
    if failed:
        print(f"{failed} benchmark rows did not run (their rows say why)")


def _plain(cfg) -> dict:
    from omegaconf import OmegaConf
    return OmegaConf.to_container(cfg, resolve=True)


def run_step(step: Step, args, out: Path, limit: int) -> str:
    log = out / "logs" / f"{step.name}.txt"
    if step.command:
        command = [c.format(out=out, device=args.device) for c in step.command]
        try:
            with open(log, "w") as f:
                done = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, timeout=limit, cwd=ROOT)
        except subprocess.TimeoutExpired:
            return f"timed out after {limit} s"
        return "ok" if done.returncode == 0 else f"failed (see logs/{step.name}.txt)"
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(limit)
    try:
        with open(log, "w") as f:
            STEP_LOG.file = f
            run_points(step, args, out)
        return "ok"
    except OutOfTime:
        return f"timed out after {limit} s"
    except Exception as err:  # noqa: BLE001 - a failed step is logged; the next one runs
        with open(log, "a") as f:
            f.write(f"\n{type(err).__name__}: {err}\n")
        return f"failed (see logs/{step.name}.txt)"
    finally:
        signal.alarm(0)
        STEP_LOG.file = sys.__stdout__


def schedule(steps: list[Step], quick: bool) -> str:
    headline = sum(s.seconds for s in steps if s.headline)
    lines = ["| step | limit s | headline | what |", "|---|---|---|---|"]
    for s in steps + FINAL:
        what = s.what or f"{len(s.points)} benchmark points"
        lines.append(f"| {s.name} | {QUICK_SECONDS if quick else s.seconds} | {'yes' if s.headline else ''} | {what} |")
    total = sum(s.seconds for s in steps + FINAL)
    return "\n".join(lines) + (f"\n\nHeadline: {headline} s and the install before it (run.sh, at most {INSTALL_S} s): "
                               f"{(headline + INSTALL_S) / 60:.1f} min on an H100; all steps: {total} s "
                               f"({total / 60:.1f} min: more leases with --resume).\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="the CPU dry run: tiny shapes")
    parser.add_argument("--resume", action="store_true", help="skip the steps OUT/steps/ says are done")
    parser.add_argument("--schedule", action="store_true", help="print the schedule and stop")
    parser.add_argument("--budget", type=int, default=None,
                        help="seconds for this call (default: 540 on a GPU, none in the dry run): a step that would "
                             "end past it, report and targets reserved, is left for --resume")
    args = parser.parse_args(argv)
    steps = plan(LENGTHS[args.quick])
    print(schedule(steps, args.quick), flush=True)
    if args.schedule:
        return 0
    out = Path(args.out).resolve()
    for folder in ("logs", "bench", "runs", "steps", "profiles"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="disabled",
                      PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    summary = out / "summary.md"
    if not (args.resume and summary.exists()):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
        summary.write_text(f"# GPU verification\n\ndevice: {args.device}  quick: {args.quick}  commit: "
                           f"{commit.stdout.strip() or 'unknown'}\n\n| step | status | seconds |\n|---|---|---|\n")
    sys.stdout = sys.stderr = STEP_LOG
    budget = args.budget or (None if args.quick else 540)
    deadline = time.time() + budget - sum(s.seconds for s in FINAL) if budget else None
    for step in steps + FINAL:
        done = out / "steps" / f"{step.name}.done"
        if args.resume and done.exists() and step not in FINAL:
            print(f"== {step.name}: done in an earlier run", flush=True)
            continue
        limit = QUICK_SECONDS if args.quick else step.seconds
        if deadline and step not in FINAL and time.time() + limit > deadline:
            print(f"== {step.name}: left for --resume (the {budget} s budget)", flush=True)
            with open(summary, "a") as f:
                f.write(f"| {step.name} | left for --resume | 0 |\n")
            continue
        print(f"== {step.name} (at most {limit} s)", flush=True)
        start = time.time()
        status = run_step(step, args, out, limit)
        seconds = round(time.time() - start)
        print(f"   {status}, {seconds} s", flush=True)
        with open(summary, "a") as f:
            f.write(f"| {step.name} | {status} | {seconds} |\n")
        if status == "ok":
            done.write_text(json.dumps({"seconds": seconds}))
    print(summary.read_text())
    if (out / "targets.md").exists():
        print((out / "targets.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
