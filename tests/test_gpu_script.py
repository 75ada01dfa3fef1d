"""The one-command GPU verification (results/gpu/run.sh), dry-run on the CPU with small shapes: every step
runs and writes what a person with a GPU would read."""

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STEPS = ["environment", "kernel_check", "attention_full", "attention_lsg", "attention_local", "model_full", "model_lsg",
         "attention_flex", "attention_local_flex", "generate", "decoder", "decoder_lsg", "decoder_local",
         "decoder_generate", "decoder_generate_lsg", "decoder_generate_local", "modernbert", "modernbert_lsg",
         "model_512", "model_lsg_512", "model_lsg_flex", "model_local", "pipeline", "model_qa", "model_qa_lsg", "model_mlm", "model_mlm_lsg", "final_report",
         "final_targets"]


@pytest.mark.slow
def test_the_gpu_script_dry_run_writes_every_result(tmp_path):
    out = subprocess.run(["bash", str(ROOT / "results/gpu/run.sh"), str(tmp_path), "--device", "cpu", "--quick"],
                         capture_output=True, text=True, timeout=900)
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
    assert {(m, a, p) for m, a in [("llama", "full"), ("llama", "lsg"), ("llama", "local"), ("mistral", "mistral"),
                                   ("gemma2", "gemma"), ("gemma3", "gemma")] for p in ("infer", "train")} \
        | {(m, a, "greedy") for m, a in [("llama", "full"), ("llama", "lsg"), ("llama", "local"), ("mistral", "mistral"),
                                         ("gemma3", "gemma")]} == decoders
    bounded = {r["attention"]: r["kv_cache_bounded"] for r in rows if r["model"] == "llama" and r["phase"] == "greedy"}
    assert [bounded[a] for a in sorted(bounded)] == [False, True, True, False]  # full, local g=0, lsg g=0, lsg g=1
    assert {r["attention"].split()[0] for r in rows if r["model"] == "modernbert" and r["status"] == "ok"} == \
        {"modernbert", "lsg"}
    flex_train = [r for r in rows if "flex" in r["attention"] and r["phase"] == "train"]
    assert flex_train and all("backward on CPU" in r["error"] for r in flex_train)  # said, not hidden
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("*.json")]
    assert record["status"] == "ok" and record["model"] == "lsg_roberta"
    assert (tmp_path / "report" / "table_bench.md").exists() and list((tmp_path / "report").glob("bench_*.png"))
    assert "| LSG-BART greedy generation tok/s at 16k / LED's |" in (tmp_path / "targets.md").read_text()


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
