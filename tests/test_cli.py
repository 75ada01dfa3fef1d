"""The command line as a user types it (subprocesses)."""

import json
import os
import subprocess
import sys
import time

import pytest

from test_readme import line_heads, quick_start_output

QUICK = ["task.synthetic.doc_words=100", "task.synthetic.n_train=16", "task.synthetic.n_test=8",
         "trainer.args.max_steps=2"]


def lsgbench(tmp_path, *args):
    env = {**os.environ, "LSGBENCH_STORE": str(tmp_path / "store"), "LSGBENCH_CACHE": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "lsgbench", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


def help_groups(text: str) -> dict[str, set[str]]:
    """The `group: a, b, c` lines of the help's "Configuration groups" section."""
    section = text.split("== Configuration groups ==")[1].split("== Config ==")[0]
    pairs = (line.split(": ", 1) for line in section.splitlines() if ": " in line)
    return {group: set(options.split(", ")) for group, options in pairs}


def test_help_lists_the_config_groups(tmp_path):
    out = lsgbench(tmp_path, "--help")
    assert out.returncode == 0
    groups = help_groups(out.stdout)
    assert groups["task"] == {"classification", "summarization", "question_answering", "multiple_choice", "arxiv",
                              "arxiv_classification", "big_patent", "synth_qa", "hotpotqa", "quality",
                              "govreport", "hyperpartisan", "imdb", "mediasum", "multi_news", "pubmed",
                              "synth_extract", "synth_keys", "triviaqa", "wikihop", "contract_nli", "qmsum",
                              "qasper", "narrativeqa", "masked_lm", "wikitext103", "pg19", "causal_lm",
                              "wikitext103_clm", "pg19_clm", "text8", "enwik8"}
    assert groups["trainer"] == {"default", "cpu", "gpu"} and "bench" not in groups  # the benchmark's, not a run's
    at_least = {  # groups that others extend: each lists at least these
        "model": "bart bert bigbird bigbird_pegasus hf led local_bart local_minilm local_roberta longformer lsg_bart "
                 "lsg_bert lsg_minilm lsg_pegasus lsg_roberta minilm pegasus roberta spade_bart spade_roberta",
        "attention": "bigbird full local longformer lsg spade mistral gemma",
        "logger": "none wandb", "experiment": "quickstart", "launcher": "local ray slurm",
        "sweep": "attention_matrix length_scaling lsg_grid",
    }
    for group, options in at_least.items():
        assert set(options.split()) <= groups[group], group


def test_quickstart_runs_and_writes_its_record(tmp_path):
    out = lsgbench(tmp_path, "experiment=quickstart", *QUICK, "hydra.run.dir=run")
    assert out.returncode == 0, out.stderr[-2000:]
    record = json.loads((tmp_path / "run" / "run_record.json").read_text())
    assert record["status"] == "ok" and record["efficiency"]["train_steps"] == 2
    assert f"run {record['run_id']}: ok" in out.stdout and "accuracy=" in out.stdout
    printed = out.stdout[out.stdout.index("run "):].splitlines()
    assert "  warning:    only 8 evaluation examples" in printed[2]  # QUICK's; the quick start has 128
    assert line_heads(printed[:2] + printed[3:]) == line_heads(quick_start_output())  # the README shows what it prints
    assert "{'loss'" not in out.stdout + out.stderr  # the Trainer's logs go to train_log.jsonl
    assert record["overrides"][0] == "experiment=quickstart"
    assert [p.name for p in (tmp_path / "store").glob("*.json")] == [f"{record['run_id']}.json"]


@pytest.mark.slow
def test_a_failed_single_run_exits_nonzero_and_keeps_its_record(tmp_path):
    out = lsgbench(tmp_path, "experiment=quickstart", *QUICK, "model.max_length=1024", "hydra.run.dir=run")
    assert out.returncode == 1
    assert "takes at most 512 tokens" in out.stdout
    assert json.loads((tmp_path / "run" / "run_record.json").read_text())["status"] == "invalid"


def test_offline_a_run_that_needs_the_hub_fails_at_once_naming_every_missing_source(tmp_path):
    """Without network (as in CI) and without HF_HUB_OFFLINE: no retries, data and checkpoint both named."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(LSGBENCH_STORE=str(tmp_path / "store"), LSGBENCH_CACHE=str(tmp_path / "cache"),
               HF_ENDPOINT="https://hub.invalid", HF_HOME=str(tmp_path / "hf"))
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "lsgbench", "task=imdb", "model=roberta"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and time.perf_counter() - start < 60
    assert "2 problems:" in out.stdout and "hub dataset 'stanfordnlp/imdb'" in out.stdout
    assert "cannot load checkpoint 'FacebookAI/roberta-base'" in out.stdout


def test_a_config_mistake_is_reported_before_the_training_stack_loads(tmp_path):
    start = time.perf_counter()
    out = lsgbench(tmp_path, "task=pubmedd")
    assert out.returncode == 1 and "Could not find 'task/pubmedd'" in out.stderr
    assert time.perf_counter() - start < 5  # composing configs only: no torch, transformers or datasets


def test_an_unknown_key_fails_in_seconds_naming_it_and_is_on_record(tmp_path):
    start = time.perf_counter()
    out = lsgbench(tmp_path, "experiment=quickstart", "+task.anything=1", "hydra.run.dir=run")
    assert out.returncode == 1 and time.perf_counter() - start < 60
    assert "error: task.anything is not a key lsgbench reads: task (classification tasks) has" in out.stdout
    record = json.loads((tmp_path / "run" / "run_record.json").read_text())
    assert record["provenance"]["dataset"] is None  # refused before any data was read
    assert record["status"] == "invalid" and [p.name for p in (tmp_path / "store").glob("*.json")] == \
        [f"{record['run_id']}.json"]


@pytest.mark.slow
def test_sigterm_during_training_leaves_an_interrupted_record_and_no_traceback(tmp_path):
    """What SLURM, `timeout` and schedulers send: handled as Ctrl-C is, exit status 128 + 15."""
    env = {**os.environ, "LSGBENCH_STORE": str(tmp_path / "store"), "LSGBENCH_CACHE": str(tmp_path / "cache")}
    job = subprocess.Popen([sys.executable, "-m", "lsgbench", "experiment=quickstart", "trainer.args.max_steps=100000",
                            "trainer.args.logging_steps=1", "hydra.run.dir=run"], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = time.time()
    while not (tmp_path / "run" / "train_log.jsonl").exists():  # the first training step is logged
        assert job.poll() is None and time.time() - started < 240, "training did not start"
        time.sleep(0.5)
    job.terminate()
    stdout, stderr = job.communicate(timeout=120)
    assert job.returncode == 143 and "Traceback" not in stderr, stderr[-3000:]
    assert "lsgbench: stopped by SIGTERM" in stderr
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "store").glob("*.json")]
    assert (record["status"], record["stage"], record["error"]) == ("interrupted", "train",
                                                                    "interrupted by SIGTERM during train")
    assert record["efficiency"]["train_steps"] >= 1
