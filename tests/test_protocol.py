"""Pretrain, then fine-tune: one pretraining per variant, reused by its every task, and the report's table that pairs
them."""

import json
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from lsgbench import protocol
from lsgbench.config import config_dir
from lsgbench.record import read_records
from lsgbench.report import main as report_main
from lsgbench.report import pretraining_table

DOCS = [" ".join(f"token{(i * 11 + j) % 60} and more ." for j in range(150)) for i in range(4)]


def corpus(folder):
    folder.mkdir()
    for split, docs in (("train", DOCS[:3]), ("test", DOCS[3:])):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps({"id": str(i), "text": d}) + "\n"
                                                       for i, d in enumerate(docs)))
    return folder


def overrides(tmp_path, task_seed: int) -> list[str]:
    return [f"paths.store_dir={tmp_path / 'store'}", f"paths.cache_dir={tmp_path / 'cache'}",
            "experiment=pretrain_finetune", "attention=local", "model.attention.window=64", "model.init=random",
            "model.size=tiny", "model.max_length=256", "model.tokenizer_vocab_size=400", "task=synth_keys",
            "task.synthetic.doc_words=100", "task.synthetic.n_train=16", "task.synthetic.n_test=8",
            f"task.synthetic.seed={task_seed}", "trainer.args.max_steps=2", "trainer.args.per_device_train_batch_size=4",
            f'pretrain.overrides=["task.data_dir={corpus_dir(tmp_path)}","trainer.args.max_steps=3"]']


def corpus_dir(tmp_path):
    return tmp_path / "corpus" if (tmp_path / "corpus").is_dir() else corpus(tmp_path / "corpus")


def test_each_variant_pretrains_once_and_every_task_fine_tunes_its_model(tmp_path):
    records = []
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        for n, seed in enumerate((0, 1)):  # two fine-tuning tasks (two data seeds) of one variant
            args = overrides(tmp_path, seed)
            pre, fine = protocol.run(compose("config", overrides=args), tmp_path / f"run{n}", args)
            records.append((pre, fine))
    (pre0, fine0), (pre1, fine1) = records
    assert pre0["status"] == fine0["status"] == fine1["status"] == "ok", (pre0["error"], fine0["error"])
    assert pre0["task_kind"] == "masked_lm" and pre0["efficiency"]["train_steps"] == 3  # its own budget
    assert pre0["attention"]["window"] == 64 and pre0["config"]["pretrain"] is None
    assert pre1.get("reused") and pre1["run_id"] == pre0["run_id"]  # pretrained once
    for fine in (fine0, fine1):
        assert fine["provenance"]["pretrained_run"] == pre0["run_id"]
        assert fine["config"]["model"]["pretrained"] == f"run:{pre0['run_id']}"
        assert fine["efficiency"]["train_steps"] == 2 and fine["attention"]["from_checkpoint"]
    header, cells, _ = pretraining_table(read_records([tmp_path / "store"]))
    assert header[:7] == ["model", "attention", "max_length", "pretrained on", "steps", "mlm_loss ↓", "bits_per_token ↓"]
    assert header[7:] == ["fine-tuned at", "trains", "synth_keys: accuracy ↑"] and len(cells) == 1  # one column
    assert cells[0][:5] == ["roberta", "local sliding w=64 g=0", "256", "wikitext103", "3"]
    assert cells[0][5] == f"{pre0['metrics']['mlm_loss']:.3f}"
    accuracies = [fine0["metrics"]["accuracy"], fine1["metrics"]["accuracy"]]
    mean = sum(accuracies) / 2
    assert cells[0][7:9] == [str(fine0["max_length"]), "all"]
    assert cells[0][9].startswith(f"{mean:.2f} ± ") and cells[0][9].endswith(" (n=2)")


def test_the_pretraining_spec_is_checked(tmp_path):
    from lsgbench.pipeline import run

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.store_dir={tmp_path}", "+pretrain.budget=3"])
    r = run(cfg, tmp_path / "out", [])
    assert r["status"] == "invalid" and "pretrain.budget is not a key lsgbench reads" in r["error"]


@pytest.mark.slow
def test_one_command_runs_the_protocol_for_three_variants_and_the_report_shows_it(tmp_path):
    args = [a for a in overrides(tmp_path, 0) if not a.startswith(("attention=", "model.attention."))]
    done = subprocess.run([sys.executable, "-m", "lsgbench", "-m", *args, "attention=lsg,local,dilated",
                           f"hydra.sweep.dir={tmp_path / 'sweep'}"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("pretraining run") == 3
    out = tmp_path / "report"
    assert report_main([str(tmp_path / "store"), "--out", str(out)]) == 0
    table = (out / "table_pretrain_finetune.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| roberta |")]
    assert len(rows) == 3 and [r.split(" | ")[1].split()[0] for r in rows] == ["lsg", "local", "dilated"]
