"""The README says what the program does: its config-group table lists the shipped configs, its Outputs
section names the files a run writes, the report section the files `--out` writes, and its quick start
shows the lines a run prints."""

import fnmatch
import json
import re
from pathlib import Path

import pytest

from lsgbench.config import shipped_dir
from lsgbench.pipeline import run
from lsgbench.report import main as report

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def section(title: str) -> str:
    """The text of a README section, from its heading to the next one of the same level or higher."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def group_options() -> dict[str, list[str]]:
    """{group: the options its row of the config-group table names (backticked)}."""
    rows = {}
    for line in section("Config groups").splitlines():
        cells = line.split(" | ")
        if line.startswith("| `") and len(cells) >= 3:
            rows[cells[0].strip("| `")] = re.findall(r"`([^`]+)`", cells[1])
    return rows


@pytest.mark.parametrize("group", ["task", "attention", "trainer", "logger", "experiment", "sweep", "launcher",
                                   "paths"])
def test_the_config_group_table_lists_every_shipped_option(group):
    shipped = sorted(p.stem for p in (shipped_dir("conf") / group).glob("*.yaml"))
    assert sorted(group_options()[group]) == shipped


def test_the_model_row_covers_every_model_file_with_its_names_and_patterns():
    listed = group_options()["model"]
    shipped = sorted(p.stem for p in (shipped_dir("conf") / "model").glob("*.yaml"))
    assert [m for m in shipped if not any(fnmatch.fnmatch(m, pattern) for pattern in listed)] == []
    assert [p for p in listed if not fnmatch.filter(shipped, p)] == []


def documented(text: str) -> list[re.Pattern]:
    """The file names a README section documents in backticks, `<a|b>` and `<word>` as placeholders."""
    patterns = []
    for name in re.findall(r"`([^`\s]+\.(?:json|jsonl|log|md|csv|tex|png|<format>))`", text):
        parts = re.split(r"(<[^>]+>)", name.split("/")[-1])
        patterns.append(re.compile("".join((f"({p[1:-1]})" if "|" in p else ".+") if p.startswith("<") else re.escape(p)
                                           for p in parts) + "$"))
    return patterns


def test_the_outputs_section_names_every_file_a_run_writes(make_cfg, tmp_path):
    overrides = ["experiment=quickstart", "task.synthetic.doc_words=80", "task.synthetic.n_train=16",
                 "task.synthetic.n_test=4", "trainer.args.max_steps=2", "trainer.args.logging_steps=1"]
    record = run(make_cfg(*overrides), tmp_path / "out", overrides)
    assert record["status"] == "ok", record["error"]
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["predictions.json", "run_record.json", "train_log.jsonl"]  # (+ cli.log, .hydra/ under Hydra)
    outputs = section("Outputs")
    assert [name for name in written if not any(p.match(name) for p in documented(outputs))] == []
    lines = [json.loads(line) for line in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 2] and "loss" in lines[0] and "train_runtime" in lines[-1]


def test_the_report_section_names_every_file_report_out_writes(tmp_path):
    from test_report import record

    summarization = {**record("s", 1, 30.0, task="synth_extract", model="bart", metric="rouge1"),
                     "task_kind": "summarization"}
    bench = {"schema": 1, "kind": "bench", "device": "cpu", "env": {}, "rows": [
        {"model": "roberta", "attention": "full", "size": "tiny", "dtype": "fp32", "bench_mode": "train",
         "seq_len": n, "batch": 1, "tokens": n, "phase": "train", "status": "ok", "step_s": 1.0,
         "tokens_per_s": float(n), "peak_mem_mb": 10.0} for n in (1024, 2048)]}
    runs = [record("a", 1, 80.0, speed=1000.0, sweep="s1", length=1024),
            record("b", 1, 90.0, speed=500.0, sweep="s1", length=2048, block=128), summarization]
    for i, doc in enumerate([*runs, bench]):
        (tmp_path / f"{i}.json").write_text(json.dumps(doc))
    assert report([str(tmp_path), "--format", "md,csv,tex", "--out", str(tmp_path / "out")]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert {"table_classification.md", "table_summarization.tex", "table_bench.csv", "quality_speed_synth_keys.png",
            "bench_model_tiny_fp32_cpu.png"} <= set(written)
    patterns = documented(section("Comparison tables and plots"))
    assert [name for name in written if not any(p.match(name) for p in patterns)] == []


def quick_start_output() -> list[str]:
    """The lines the README's quick start says the command prints after its progress bar."""
    block = section("Quick start").split("```\n")[-2]  # the last code block: the printed output
    return [line for line in block.splitlines() if not line.startswith("100%")]


def line_heads(lines: list[str]) -> list[str]:
    """What each printed line is: "run", "  task", "  metrics", ... (test_cli compares the command's own)."""
    return [re.match(r"\s*[a-z]+", line).group(0) for line in lines]
