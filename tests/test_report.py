import csv
import io
import json

import pytest

from lsgbench.record import read_records
from lsgbench.report import attention_label, main, render


def record(run_id, seed, accuracy, status="ok", block=64, error=None):
    return {"schema": 1, "run_id": run_id, "status": status, "task": "synth_keys", "task_kind": "classification",
            "model": "lsg_roberta", "attention": {"type": "lsg", "block_size": block, "sparse_block_size": 32,
                                                  "sparsity_factor": 4, "sparsity_type": "pooling",
                                                  "num_global_tokens": 1, "pool_with_global": True},
            "max_length": 1024, "metrics": {"accuracy": accuracy} if status == "ok" else {},
            "efficiency": {"train_tokens_per_s": 1000.0 * seed, "eval_tokens_per_s": 5000.0, "train_peak_mem_mb": 700.0}
            if status == "ok" else {},
            "provenance": {}, "config": {"seed": seed, "model": {"attention": {"block_size": block}}},
            "overrides": [f"seed={seed}"], "env": {}, "error": error}


@pytest.fixture
def store(tmp_path):
    runs = [record("a", 1, 80.0), record("b", 2, 90.0), record("c", 3, 100.0),
            record("d", 1, 0, status="oom", block=512, error="out of memory")]
    for r in runs:
        (tmp_path / f"{r['run_id']}.json").write_text(json.dumps(r))
    return tmp_path


def test_seeds_are_grouped_with_mean_std_and_failures_stay_visible(store):
    text = render(read_records([store]),
                  ["task", "model", "attention"], "md")
    lines = text.splitlines()
    assert lines[0].startswith("| task | model | attention | accuracy ↑ |")
    assert "| lsg b=64 s=32 f=4 pooling g=1 | 90.00 ± 10.00 |" in lines[2]  # stdev of 80, 90, 100
    assert "2000 ± 1000" in lines[2] and "| 3/3 | ok |" in lines[2]
    assert "lsg b=512" in lines[3] and "| — |" in lines[3] and "| 0/1 | oom |" in lines[3]
    assert "out of memory" in text


def test_csv_parses_back_to_the_same_numbers(store, tmp_path, capsys):
    assert main([str(store), "--format", "md,csv", "--out", str(tmp_path / "out"), "--by", "model,attention"]) == 0
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "table.csv").read_text())))
    assert len(rows) == 2 and rows[0]["accuracy ↑"] == "90.00 ± 10.00" and rows[1]["status"] == "oom"
    assert (tmp_path / "out" / "table.md").read_text() in capsys.readouterr().out


def test_report_errors_are_clear(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    assert main([str(tmp_path)]) == 2
    assert "no run records or benchmark results" in capsys.readouterr().err
    assert main([str(tmp_path), "--by", "colour"]) == 2


def test_attention_labels():
    assert attention_label({"type": "local", "mode": "disjoint", "window": 512, "block_size": 128,
                            "num_global_tokens": 0}) == "local disjoint b=128 g=0"
    assert attention_label({"type": "full"}) == "full"


def test_benchmark_results_render_as_a_table(tmp_path, capsys):
    rows = [{"model": "lsg_roberta", "attention": "lsg b=128", "size": "tiny", "dtype": "fp32", "bench_mode": "both",
             "seq_len": 1024, "batch": 16, "tokens": 16384, "phase": "train", "status": "ok", "step_s": 0.5,
             "tokens_per_s": 32768.0, "peak_mem_mb": 120.4},
            {"model": "roberta", "size": "tiny", "dtype": "fp32", "bench_mode": "both", "seq_len": 16384, "batch": 1,
             "tokens": 16384, "phase": "train", "status": "oom", "error": "out of memory"}]
    (tmp_path / "b.json").write_text(json.dumps({"schema": 1, "kind": "bench", "device": "cpu", "rows": rows}))
    assert main([str(tmp_path), "--format", "csv"]) == 0
    table = list(csv.reader(io.StringIO(capsys.readouterr().out.strip())))
    assert table[1][-4:] == ["500.0", "32768", "120", "ok"] and table[2][-4:] == ["—", "—", "—", "oom"]
