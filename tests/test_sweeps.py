"""Sweeps as a user types them: Hydra multirun grids, resuming, failures, launchers, DDP."""

import csv
import io
import json
import os
import shutil
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from lsgbench.pipeline import run
from lsgbench.record import read_records
from lsgbench.report import main as report

TINY_TASK = ["task=synth_keys", "task.synthetic.doc_words=80", "task.synthetic.n_train=16", "task.synthetic.n_test=8",
             "model.init=random", "model.size=tiny", "trainer=cpu", "trainer.args.max_steps=2",
             "trainer.args.per_device_train_batch_size=4"]
GRID = ["model=lsg_roberta", "model.max_length=128", "model.attention.sparse_block_size=8",
        "model.attention.block_size=16,32", "model.attention.sparsity_factor=2,4"]


def hydra_cfg(*overrides):
    """The composed config with its hydra node, in this process (a subprocess costs seconds)."""
    from hydra import compose, initialize_config_dir

    from lsgbench.config import config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def lsgbench(tmp_path, *args, module="lsgbench", launcher=(sys.executable, "-m")):
    env = {**os.environ, "LSGBENCH_STORE": str(tmp_path / "store"), "LSGBENCH_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([*launcher, module, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow
def test_a_2x2_grid_gives_4_records_a_4_row_table_and_reruns_skip(tmp_path, capsys):
    first = lsgbench(tmp_path, "-m", *TINY_TASK, *GRID)
    records = read_records([tmp_path / "store"])
    assert len(records) == 4 and {r["status"] for r in records} == {"ok"}
    knobs = {(r["attention"]["block_size"], r["attention"]["sparsity_factor"]) for r in records}
    assert knobs == {(16, 2), (16, 4), (32, 2), (32, 4)}
    assert len({r["sweep"] for r in records}) == 1 and records[0]["sweep"]  # one sweep: one wandb group
    assert first.count(": ok") == 4

    assert report([str(tmp_path / "store"), "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out.strip())))
    assert len(table) == 4
    by_label = {row["attention"]: row for row in table}
    for r in records:
        row = by_label[f"lsg b={r['attention']['block_size']} s=8 f={r['attention']['sparsity_factor']} norm g=1"]
        assert row["accuracy"] == f"{r['metrics']['accuracy']:.2f}"
        assert row["train tok/s"] == f"{r['efficiency']['train_tokens_per_s']:.0f}"

    again = lsgbench(tmp_path, "-m", *TINY_TASK, *GRID)
    assert again.count("skipped: reused from the store") == 4
    assert len(list((tmp_path / "store").glob("*.json"))) == 4  # nothing new ran
    sweeps = sorted((tmp_path / "multirun").iterdir())
    assert len(sweeps) == 2  # two sweeps started close together still get their own dirs
    reused = [json.loads(p.read_text()) for p in sweeps[1].glob("*/run_record.json")]
    assert {r["run_id"] for r in reused} == {r["run_id"] for r in records}

    forced = lsgbench(tmp_path, "-m", *TINY_TASK, *GRID[:-2], "model.attention.block_size=16",
                      "model.attention.sparsity_factor=2", "force=true")
    assert "skipped" not in forced and len(list((tmp_path / "store").glob("*.json"))) == 5


@pytest.mark.slow
def test_a_failing_point_is_recorded_and_the_sweep_goes_on(tmp_path):
    out = lsgbench(tmp_path, "-m", *TINY_TASK, *GRID[:-2], "model.attention.block_size=16",
                   "model.attention.sparsity_factor=2,3")
    status = {r["attention"]["sparsity_factor"]: r for r in read_records([tmp_path / "multirun"])}  # the run dirs
    assert status[2]["status"] == "ok" and status[3]["status"] == "invalid"
    assert "block_size=16 must be divisible by sparsity_factor=3" in status[3]["error"]
    assert f"run {status[3]['run_id']}: invalid" in out
    # every attempted point is in the store; the report lists the refused one under its table, never as a row
    assert sorted(r["status"] for r in read_records([tmp_path / "store"])) == ["invalid", "ok"]
    report = lsgbench(tmp_path, str(tmp_path / "store"), module="lsgbench.report")
    assert report.count("\n| synth_keys |") == 1
    assert f"- refused before training (invalid), {status[3]['run_id']}: " in report
    assert "model.attention.sparsity_factor=3: lsg attention: block_size=16 must be divisible" in report


@pytest.mark.parametrize("sweep, knob, values", [
    ("lsg_grid", "model.attention.sparsity_type", "pooling,stride,norm"),
    ("lsg_grid", "model.attention.block_size", "32,64,128"),
    ("attention_matrix", "model", "roberta,longformer,bigbird,lsg_roberta,local_roberta,spade_roberta,longt5_local,"
                         "longt5_tglobal,pegasus_x,modernbert,llama"),
    ("length_scaling", "model", "roberta,longformer,bigbird,lsg_roberta,local_roberta,longt5_tglobal,pegasus_x"),
    ("summarization_matrix", "model",
     "bart,led,bigbird_pegasus,lsg_bart,local_bart,spade_bart,longt5_local,longt5_tglobal,pegasus_x"),
    ("length_scaling_summarization", "model", "bart,led,bigbird_pegasus,lsg_bart,local_bart,longt5_tglobal,pegasus_x"),
    ("qa_matrix", "model", "roberta,longformer,bigbird,lsg_roberta,local_roberta,led,modernbert"),
    ("choice_matrix", "model", "roberta,longformer,bigbird,lsg_roberta,local_roberta,modernbert"),
    ("extrapolation", "model.eval_max_length", "1024,2048,4096,8192,16384"),
])
def test_saved_grids_name_their_points(sweep, knob, values):
    assert hydra_cfg(f"sweep={sweep}").hydra.sweeper.params[knob] == values


@pytest.mark.slow
def test_the_command_line_wins_over_a_saved_grid(tmp_path):
    # a knob given on the command line replaces the grid's values (here: one sparsity type, 2x1 points)
    lsgbench(tmp_path, "-m", "sweep=lsg_grid", *TINY_TASK, "model.max_length=128", "model.attention.sparse_block_size=8",
             "model.attention.block_size=16,32", "model.attention.sparsity_factor=4",
             "model.attention.sparsity_type=pooling")
    records = read_records([tmp_path / "store"])
    assert {r["model"] for r in records} == {"lsg_roberta"}
    assert sorted((r["attention"]["block_size"], r["attention"]["sparsity_type"]) for r in records) == \
        [(16, "pooling"), (32, "pooling")]


def test_length_scaling_holds_tokens_per_batch_and_fills_the_input(make_cfg):
    cfg = make_cfg("sweep=length_scaling", "model=lsg_roberta", "model.max_length=4096")
    assert cfg.trainer.args.per_device_train_batch_size == 4 and cfg.task.synthetic.doc_words == 4096
    assert cfg.task.synthetic.n_train == 256 and cfg.model.max_positions == 4096 and cfg.model.init == "random"


@pytest.mark.parametrize("sweep, overrides, length", [
    ("attention_matrix", ["task=synth_keys"], None),  # full attention at its own 512, the others at the task's
    ("summarization_matrix", [], None),
    ("length_scaling", ["model.max_length=1024"], 1024),
    ("length_scaling_summarization", ["model.max_length=1024"], 1024),
    ("qa_matrix", [], None),
    ("choice_matrix", ["task.data_dir=unused"], None)])
def test_every_model_of_a_saved_grid_builds_for_its_task(make_cfg, sweep, overrides, length):
    from lsgbench.models import build_model

    for model in hydra_cfg(f"sweep={sweep}").hydra.sweeper.params.model.split(","):
        cfg = make_cfg(f"sweep={sweep}", f"model={model}", "model.init=random", "model.size=tiny", *overrides)
        built = build_model(cfg.model, cfg.task, ["some text to train a tokenizer on ."], cfg.paths.cache_dir)
        own = cfg.model.max_positions if model in ("roberta", "bart") else cfg.task.max_source_length
        assert built.max_length == (length or min(cfg.task.max_source_length, own)), model


def test_length_scaling_of_summarizers_fills_the_input(make_cfg):
    from lsgbench.synthetic import extract_rows

    cfg = make_cfg("sweep=length_scaling_summarization", "model=lsg_bart", "model.max_length=2048")
    assert cfg.trainer.args.per_device_train_batch_size == 8 and cfg.task.synthetic.n_train == 512
    synthetic = {k: v for k, v in cfg.task.synthetic.items() if k not in ("generator", "n_train", "n_validation", "n_test")}
    article = extract_rows("train", 1, **synthetic)[0]["article"]
    assert 2048 <= len(article.split()) + article.count("\n") < 2048 * 1.2  # words and line breaks: at least one token each


@pytest.mark.slow
def test_local_launcher_runs_points_in_2_processes(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    lsgbench(tmp_path, "-m", "launcher=local", *TINY_TASK, "model=local_roberta", "model.max_length=128",
             "model.attention.window=16,32")
    records = read_records([tmp_path / "store"])
    assert sorted(r["attention"]["window"] for r in records) == [16, 32] and {r["status"] for r in records} == {"ok"}
    (sweep,) = (tmp_path / "multirun").iterdir()
    launcher = OmegaConf.load(sweep / "multirun.yaml").hydra.launcher
    assert "JoblibLauncher" in launcher._target_ and launcher.n_jobs == 2


def test_slurm_launcher_config_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    launcher = hydra_cfg("launcher=slurm").hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.gpus_per_node == 1


def torchrun(port: int):
    path = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    assert path, "torchrun comes with torch"
    return (path, "--nproc_per_node=2", f"--master_port={port}", "-m")


@pytest.mark.slow
def test_ddp_with_gloo_on_2_cpu_processes(tmp_path):
    lsgbench(tmp_path, *TINY_TASK, "model=roberta", "trainer.args.max_steps=3", "hydra.run.dir=ddp",
             launcher=torchrun(29517))
    (record,) = read_records([tmp_path / "store"])  # rank 0 alone writes it
    eff = record["efficiency"]
    assert record["status"] == "ok" and eff["world_size"] == 2 and eff["train_steps"] == 3
    assert record["metrics"]["accuracy"] >= 0
    # The timed steps (2 and 3) took 4 documents on each rank: 16 documents, whose lengths bound
    # the count; one rank's 8 could not reach the lower bound.
    from transformers import PreTrainedTokenizerFast

    from lsgbench.synthetic import keys_rows

    (tokenizer_dir,) = (tmp_path / "cache" / "tokenizers").iterdir()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir))
    docs = keys_rows("train", 16, label_names=["amber", "cobalt"], doc_words=80, num_keys=3, num_distractors=0,
                     key_start=0.5, seed=0)
    lengths = [len(tokenizer(d["text"])["input_ids"]) for d in docs]
    assert 8 * max(lengths) < 16 * min(lengths) <= eff["train_tokens"] <= 16 * max(lengths)


@pytest.mark.slow
def test_a_failed_ddp_run_leaves_one_record(tmp_path):
    env = {**os.environ, "LSGBENCH_STORE": str(tmp_path / "store"), "LSGBENCH_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([*torchrun(29518), "lsgbench", *TINY_TASK, *GRID[:-2], "model.attention.block_size=30",
                          "model.attention.sparsity_factor=4", "hydra.run.dir=ddp"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode != 0
    (record,) = read_records([tmp_path / "ddp"])  # rank 0's alone
    assert record["status"] == "invalid" and "divisible by sparsity_factor=4" in record["error"]
    assert read_records([tmp_path / "store"]) == [record]


def test_a_stored_ok_run_is_reused_unless_forced(make_cfg, tmp_path):
    overrides = [*TINY_TASK, "model=roberta", "trainer.args.max_steps=1"]
    first = run(make_cfg(*overrides), tmp_path / "a")
    (tmp_path / "store" / "truncated.json").write_text('{"schema": 1, "run_')  # a stray file is skipped
    second = run(make_cfg(*overrides, "debug=true"), tmp_path / "b")  # debug changes nothing computed
    assert second["reused"] and second["run_id"] == first["run_id"]
    assert json.loads((tmp_path / "b" / "run_record.json").read_text())["run_id"] == first["run_id"]
    assert run(make_cfg(*overrides, "seed=7"), tmp_path / "c")["run_id"] != first["run_id"]  # another config
    forced = run(make_cfg(*overrides, "force=true"), tmp_path / "d")
    assert "reused" not in forced and forced["run_id"] != first["run_id"]
    assert len(read_records([tmp_path / "store"])) == 3


def test_run_dirs_are_unique_even_in_the_same_second(make_cfg):
    from hydra import compose, initialize_config_dir

    from lsgbench.config import config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        dirs = [compose("config", return_hydra_config=True).hydra.run.dir for _ in range(2)]
        sweeps = [compose("config", return_hydra_config=True).hydra.sweep.dir for _ in range(2)]
    assert dirs[0] != dirs[1] and sweeps[0] != sweeps[1]
