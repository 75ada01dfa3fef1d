"""The one-command GPU verification (results/gpu/run.sh), dry-run on the CPU with small shapes: every step
runs and writes what a person with a GPU would read."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STEPS = ["environment", "encoder_16k", "encoder_4k", "encoder_1k", "decoder_16k", "decoder_1k", "kernel_check", "generate",
         "decoder_generate", "decoder_peers", "modernbert", "attention", "encoder_infer", "pytest_gpu", "pipeline",
         "question_answering", "masked_lm", "report", "targets"]


def test_the_schedule_puts_the_headline_within_six_minutes_of_an_h100():
    out = subprocess.run([sys.executable, str(ROOT / "results/gpu/plan.py"), "unused", "--schedule"], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    lines = out.stdout.splitlines()
    steps = [line.split(" | ") for line in lines if line.startswith("| ") and not line.startswith("| step")]
    assert [s[0][2:] for s in steps] == STEPS
    headline = [int(s[1]) for s in steps if s[2] == "yes"]
    assert [s[0][2:] for s in steps[:4]] == ["environment", "encoder_16k", "encoder_4k", "encoder_1k"]
    assert sum(headline) + 45 <= 360 and "Headline: 315 s and the install before it (run.sh, at most 45 s): 6.0 min" \
        in out.stdout


@pytest.mark.slow
def test_the_gpu_script_dry_run_writes_every_result(tmp_path):
    out = subprocess.run(["bash", str(ROOT / "results/gpu/run.sh"), str(tmp_path), "--device", "cpu", "--quick"],
                         capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    steps = [line.split(" | ")[:2] for line in (tmp_path / "summary.md").read_text().splitlines()
             if line.startswith("| ") and not line.startswith("| step")]
    assert steps == [[f"| {name}", "ok"] for name in STEPS], steps
    checks = json.loads((tmp_path / "kernel_check.json").read_text())["rows"]
    assert checks and all(r["ok"] is not False for r in checks)
    rows = [row for path in (tmp_path / "bench").rglob("*.json") for row in json.loads(path.read_text())["rows"]]
    ok = {(r["bench_mode"], r["model"], r["phase"]) for r in rows if r["status"] == "ok"}
    assert {("attention", "lsg_roberta", "infer"), ("attention", "local_roberta", "infer"), ("train", "bigbird", "train"),
            ("generate", "lsg_bart", "beam4"), ("generate", "led", "greedy"), ("generate", "pegasus_x", "greedy"),
            ("generate", "longt5_tglobal", "greedy")} <= {(m if m != "both" else p, n, p) for m, n, p in ok} | ok
    qa = {r["model"] for r in rows if r.get("head") == "question_answering" and r["status"] == "ok"}
    assert qa == {"roberta", "longformer", "bigbird", "lsg_roberta"}  # a QA training step of each
    mlm = {r["model"] for r in rows if r.get("head") == "masked_lm" and r["status"] == "ok"}
    assert mlm == {"roberta", "longformer", "bigbird", "local_roberta", "lsg_roberta"}  # a pretraining step of each
    decoders = {(r["model"], r["attention"].split()[0], r["phase"]) for r in rows
                if r.get("head") == "causal_lm" and r["status"] == "ok"}
    assert {("llama", a, "train") for a in ("full", "lsg", "local")} \
        | {(m, a, p) for m, a in [("mistral", "mistral"), ("gemma2", "gemma"), ("gemma3", "gemma")] for p in ("infer", "train")} \
        | {(m, a, "greedy") for m, a in [("llama", "full"), ("llama", "lsg"), ("llama", "local"), ("mistral", "mistral"),
                                         ("gemma3", "gemma")]} == decoders
    assert all(r["kernel_ops"] > 0 for r in rows if r["status"] == "ok")
    assert {r["backend"] for r in rows if r["model"] == "lsg_roberta" and r["status"] == "ok"} == {"blocks", "flex"}
    profiles = sorted(p.name for p in (tmp_path / "profiles").iterdir())  # the encoders' rows at the long length
    assert len(profiles) == 4 and all(p.endswith("_512_train.txt") for p in profiles)  # flex: no backward on a CPU
    assert "device_kernels: —" in (tmp_path / "profiles" / profiles[0]).read_text()
    bounded = {r["attention"]: r["kv_cache_bounded"] for r in rows if r["model"] == "llama" and r["phase"] == "greedy"}
    assert [bounded[a] for a in sorted(bounded)] == [False, True, True, False]  # full, local g=0, lsg g=0, lsg g=1
    assert {r["attention"].split()[0] for r in rows if r["model"] == "modernbert" and r["status"] == "ok"} == \
        {"modernbert", "lsg"}
    flex_train = [r for r in rows if "flex" in r["attention"] and r["phase"] == "train"]
    assert flex_train and all("backward on CPU" in r["error"] for r in flex_train)  # said, not hidden
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("*.json")]
    assert record["status"] == "ok" and record["model"] == "lsg_roberta"
    assert (tmp_path / "report" / "table_bench.md").exists() and list((tmp_path / "report").glob("bench_*.png"))
    assert "| LSG (flex) train tok/s at 16k / full SDPA's |" in (tmp_path / "targets.md").read_text()
    again = subprocess.run(["bash", str(ROOT / "results/gpu/run.sh"), str(tmp_path), "--device", "cpu", "--quick",
                            "--resume"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("done in an earlier run") == len(STEPS) - 2, again.stdout[-2000:]


def test_targets_compare_classifier_rows_never_a_qa_step():
    import importlib.util

    spec = importlib.util.spec_from_file_location("targets", ROOT / "results/gpu/targets.py")
    targets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(targets)
    row = {"model": "longformer", "phase": "train", "seq_len": 16384, "status": "ok", "bench_mode": "train",
           "attention": "longformer w=512"}
    qa, classifier, old = {**row, "head": "question_answering"}, {**row, "head": "classification"}, dict(row)
    assert targets.find([qa, classifier], "longformer", "train", 16384) is classifier
    assert targets.find([qa, old], "longformer", "train", 16384) is old  # made before rows named their head
    assert targets.find([qa], "longformer", "train", 16384) is None  # reads "not measured"
