"""End-to-end runs on tiny random-init models: every family trains and evaluates, records are complete."""

import json
import math

import pytest
from hydra.errors import MissingConfigException

from lsgbench.cli import summary
from lsgbench.kinds.base import truncation
from lsgbench.pipeline import run
from lsgbench.record import REQUIRED_KEYS, read_records

TINY = ["model.init=random", "model.size=tiny", "trainer.args.per_device_train_batch_size=4",
        "trainer.args.per_device_eval_batch_size=4"]
KEYS_SMALL = ["task=synth_keys", "task.synthetic.doc_words=120", "task.synthetic.n_train=24",
              "task.synthetic.n_test=8"]
EXTRACT_SMALL = ["task=synth_extract", "task.synthetic.doc_sentences=12", "task.synthetic.num_selected=2",
                 "task.synthetic.n_train=16", "task.synthetic.n_test=4", "task.generation.max_new_tokens=8"]


def run_and_read(make_cfg, tmp_path, *overrides, sweep=None):
    cfg = make_cfg(*TINY, *overrides)
    record = run(cfg, tmp_path / "out", list(overrides), sweep)
    on_disk = json.loads((tmp_path / "out" / "run_record.json").read_text())
    assert on_disk == json.loads(json.dumps(record, default=str))
    assert read_records([cfg.paths.store_dir]) == [on_disk]  # every attempted run, also a refused one
    assert (on_disk["status"] == "invalid") == (on_disk["stage"] == "setup" and on_disk["status"] != "ok")
    assert set(REQUIRED_KEYS) <= set(record)
    return record


def test_classification_run_record(make_cfg, tmp_path):
    r = run_and_read(make_cfg, tmp_path, *KEYS_SMALL, "model=roberta", "trainer.args.max_steps=6")
    assert r["status"] == "ok" and r["error"] is None
    assert (r["task"], r["task_kind"], r["model"], r["attention"]) == ("synth_keys", "classification", "roberta",
                                                                      {"type": "full", "implementation": "sdpa"})
    assert r["provenance"]["n_train"] == 24 and r["provenance"]["n_eval"] == 8
    assert r["provenance"]["dataset"] == "synthetic:keys(seed=0)"
    assert r["provenance"]["model_init"] == "random:tiny" and r["provenance"]["seed"] == 42
    assert r["max_length"] == 512 and r["attention_backend"] == {}  # the backbone's own attention: no lsgbench kernel
    assert set(r["metrics"]) == {"accuracy", "f1_macro", "f1_micro"}
    assert all(0 <= v <= 100 for v in r["metrics"].values())
    assert r["metrics"]["accuracy"] * 8 / 100 == pytest.approx(round(r["metrics"]["accuracy"] * 8 / 100))
    eff = r["efficiency"]
    assert eff["device"] == "cpu" and eff["train_steps"] == 6
    for key in ("train_tokens_per_s", "eval_tokens_per_s", "train_peak_mem_mb", "eval_peak_mem_mb", "train_s", "eval_s"):
        assert eff[key] > 0 and math.isfinite(eff[key]), key
    assert eff["train_padded_tokens_per_s"] >= eff["train_tokens_per_s"]
    assert r["env"]["torch"] and r["env"]["transformers"] and r["config"]["model"]["size"] == "tiny"


def test_summarization_run_record_has_rouge(make_cfg, tmp_path):
    r = run_and_read(make_cfg, tmp_path, *EXTRACT_SMALL, "model=bart", "trainer.args.max_steps=2")
    assert r["status"] == "ok", r["error"]
    assert set(r["metrics"]) == {"rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len"}
    assert all(0 <= r["metrics"][k] <= 100 for k in ("rouge1", "rouge2", "rougeL", "rougeLsum"))
    assert 1 <= r["metrics"]["gen_len"] <= 8
    assert r["provenance"]["rouge_lsum_split"] == "punkt"
    assert r["efficiency"]["generated_tokens_per_s"] > 0
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert len(predictions["predictions"]) == r["provenance"]["n_eval"] == 4


@pytest.mark.parametrize("overrides", [
    ["model=longformer", *KEYS_SMALL, "model.attention.attention_window=32"],
    ["model=bigbird", *KEYS_SMALL, "model.max_length=256", "model.attention.block_size=16",
     "model.attention.num_random_blocks=1"],
    ["model=bart", *KEYS_SMALL],
    ["model=led", *EXTRACT_SMALL, "model.attention.attention_window=32"],
    ["model=bigbird_pegasus", *EXTRACT_SMALL, "model.max_length=256", "model.attention.block_size=16",
     "model.attention.num_random_blocks=1"],
    ["model=lsg_roberta", *KEYS_SMALL, "model.attention.block_size=16", "model.attention.sparse_block_size=8"],
    ["model=lsg_bart", *EXTRACT_SMALL, "model.attention.block_size=16", "model.attention.sparsity_type=stride"],
    ["model=lsg_pegasus", *EXTRACT_SMALL, "model.attention.block_size=16", "model.attention.sparsity_type=norm",
     "model.attention.sparse_block_size=8"],
    ["model=local_roberta", *KEYS_SMALL, "model.attention.mode=disjoint", "model.attention.block_size=16",
     "model.attention.num_global_tokens=1"],
    ["model=local_bart", *EXTRACT_SMALL, "model.attention.window=16"],
    ["model=spade_roberta", *KEYS_SMALL, "model.attention.window=16", "model.attention.state_size=8"],
], ids=["longformer", "bigbird", "bart-cls", "led", "bigbird_pegasus", "lsg_roberta", "lsg_bart", "lsg_pegasus",
        "local_roberta", "local_bart", "spade_roberta"])
def test_peer_models_train_and_evaluate(make_cfg, tmp_path, overrides):
    r = run_and_read(make_cfg, tmp_path, *overrides, "trainer.args.max_steps=1")
    assert r["status"] == "ok", r["error"]
    assert r["efficiency"]["train_steps"] == 1 and r["metrics"]


@pytest.mark.parametrize("overrides, status, message", [
    (["model=roberta", *EXTRACT_SMALL], "invalid", "model 'roberta' has no summarization head"),
    (["model=led", *KEYS_SMALL], "invalid", "model 'led' has no classification head"),
    (["model=roberta", *KEYS_SMALL, "model.max_length=1024"], "invalid", "takes at most 512 tokens"),
    (["model=roberta", *KEYS_SMALL, "model.size=huge"], "invalid", "model.size='huge' is unknown"),
    (["model=roberta", *KEYS_SMALL, "trainer.args.learning_rate=1e30", "trainer.args.max_steps=8",
      "trainer.args.max_grad_norm=0"], "failed", "training loss became"),
    (["model=roberta", *KEYS_SMALL, "+trainer.args.not_an_argument=1"], "invalid", "trainer.args"),
    (["model=lsg_roberta", *KEYS_SMALL, "model.attention.block_size=30", "model.attention.sparsity_factor=4"],
     "invalid", "block_size=30 must be divisible by sparsity_factor=4"),
    (["model=longformer", *KEYS_SMALL, "attention=lsg"], "invalid", "attention=lsg is not available for model"),
    (["model=lsg_roberta", *KEYS_SMALL, "+model.attention.blok_size=64"], "invalid",
     "model.attention.blok_size is not a key lsgbench reads: model.attention (lsg attention) has backend, block_size,"),
    (["model=roberta", *KEYS_SMALL, "model.attention.implementation=flash"], "invalid",
     "implementation='flash' is unknown; choose one of ['sdpa', 'eager']"),
    (["model=lsg_roberta", *KEYS_SMALL, "model.attention.block_size=big"], "invalid", "must be an integer"),
    (["model=roberta", *KEYS_SMALL, "trainer.args.lr_scheduler_type=sideways"], "invalid", "trainer.args"),
    (["model=local_roberta", *KEYS_SMALL, "model.attention.mode=diagonal"], "invalid", "mode='diagonal' is unknown"),
    (["model=spade_roberta", *KEYS_SMALL, "model.attention.spade_layers=[5]"], "invalid", "but the encoder has 2"),
    (["model=spade_roberta", *KEYS_SMALL, "model.attention.combine=multiply"], "invalid", "combine='multiply'"),
])
def test_failures_are_recorded_with_a_clear_error(make_cfg, tmp_path, overrides, status, message):
    r = run_and_read(make_cfg, tmp_path, *overrides)
    assert r["status"] == status and message in r["error"]
    assert r["metrics"] == {}


def test_pretrained_checkpoint_needs_the_hub_or_a_local_dir(make_cfg, tmp_path):
    r = run_and_read(make_cfg, tmp_path, "model=roberta", "model.init=pretrained", *KEYS_SMALL)
    assert r["status"] == "invalid"
    assert "model.init=random" in r["error"] and "FacebookAI/roberta-base" in r["error"]


TASKS = ["classification", "summarization", "imdb", "arxiv_classification", "hyperpartisan", "pubmed", "arxiv",
         "synth_keys", "synth_extract"]
MODELS = ["roberta", "bart", "minilm", "longformer", "led", "bigbird", "bigbird_pegasus", "lsg_roberta", "lsg_bert",
          "lsg_bart", "lsg_minilm", "pegasus", "lsg_pegasus", "local_roberta", "local_bart", "local_minilm",
          "spade_roberta", "spade_bart"]


def test_every_task_and_model_composes(make_cfg):
    # model files do not read task keys, so each task with one model and each model with one task covers the grid
    for task in TASKS:
        cfg = make_cfg(f"task={task}", "model=roberta")
        assert cfg.task.name == task and cfg.task.kind in ("classification", "summarization")
    for model in MODELS:
        cfg = make_cfg("task=synth_keys", f"model={model}")
        assert cfg.model.name == model and cfg.model.trust_remote_code is False


def write_local_task(folder, rows_of_split):
    folder.mkdir(exist_ok=True)
    for split, rows in rows_of_split.items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.mark.parametrize("kind, model, extra", [
    ("classification", "roberta", ["task.label_names=[amber,cobalt]"]),
    ("summarization", "bart", ["task.generation.max_new_tokens=8"]),
])
def test_a_generic_task_runs_a_local_folder(make_cfg, tmp_path, kind, model, extra):
    from lsgbench.synthetic import extract_rows, keys_rows

    if kind == "classification":
        rows = {s: keys_rows(s, n, label_names=["amber", "cobalt"], doc_words=80, num_keys=3, num_distractors=0,
                             key_start=0.5, seed=0) for s, n in (("train", 16), ("test", 4))}
    else:
        rows = {s: extract_rows(s, n, doc_sentences=8, num_selected=2, num_topics=3, key_start=0.5, seed=0)
                for s, n in (("train", 16), ("test", 4))}
    data_dir = write_local_task(tmp_path / "mine", rows)
    r = run_and_read(make_cfg, tmp_path, f"task={kind}", "task.name=mine", f"task.data_dir={data_dir}",
                     f"model={model}", "trainer.args.max_steps=1", *extra)
    assert r["status"] == "ok", r["error"]
    assert (r["task"], r["task_kind"], r["provenance"]["dataset"]) == ("mine", kind, f"local:{data_dir}")
    assert r["provenance"]["n_train"] == 16 and r["provenance"]["n_eval"] == 4 and r["metrics"]


def test_a_generic_classification_task_asks_for_its_label_names(make_cfg, tmp_path):
    data_dir = write_local_task(tmp_path / "mine", {s: [{"id": s, "text": "some text", "label": 0}]
                                                    for s in ("train", "test")})
    r = run_and_read(make_cfg, tmp_path, "task=classification", f"task.data_dir={data_dir}", "model=roberta")
    assert r["status"] == "invalid" and "task.label_names" in r["error"]


@pytest.mark.parametrize("kind", ["classification", "summarization"])
def test_a_generic_task_without_data_says_where_to_put_it(make_cfg, tmp_path, kind):
    labels = ["task.label_names=[a,b]"] if kind == "classification" else []
    r = run_and_read(make_cfg, tmp_path, f"task={kind}", *labels, "model=bart")
    assert r["status"] == "invalid" and "task.data_dir" in r["error"] and "LSGBENCH_DATA_DIR" in r["error"]


def test_unknown_task_lists_the_choices(make_cfg):
    with pytest.raises(MissingConfigException) as err:
        make_cfg("task=pubmedd")
    assert "pubmed" in str(err.value) and "synth_keys" in str(err.value)


def test_wandb_logger_records_config_metrics_and_efficiency_offline(make_cfg, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    r = run_and_read(make_cfg, tmp_path, *KEYS_SMALL, "model=roberta", "trainer.args.max_steps=2", "logger=wandb",
                     sweep="sweep-a")  # logger.group=null: the sweep's runs share its id as their group
    assert r["status"] == "ok", r["error"]
    data = offline_run_bytes(tmp_path, r["run_id"])
    for key in (b"final/accuracy", b"efficiency/train_tokens_per_s", b"sweep-a", r["run_id"].encode()):
        assert key in data, key


def test_wandb_run_is_finished_when_the_run_fails(make_cfg, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    wandb.teardown()  # wandb keeps its first WANDB_DIR per process; start afresh
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    r = run_and_read(make_cfg, tmp_path, *KEYS_SMALL, "model=spade_roberta", "model.attention.spade_layers=[5]",
                     "logger=wandb")  # refused when the model is built: after the tracker started
    assert r["status"] == "invalid" and wandb.run is None  # finished, not left open for the next run
    data = offline_run_bytes(tmp_path, r["run_id"])
    assert r["run_id"].encode() in data and b"invalid" in data


def offline_run_bytes(tmp_path, run_id: str, wait_s: float = 30.0) -> bytes:
    """The one offline wandb run file, once wandb's writer process has flushed the run into it."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        (run,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
        data = run.read_bytes()
        if run_id.encode() in data or time.monotonic() > deadline:
            return data
        time.sleep(0.2)


def test_default_config_resolves_with_no_overrides(monkeypatch):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from lsgbench.config import config_dir

    monkeypatch.delenv("LSGBENCH_CACHE", raising=False)
    monkeypatch.delenv("LSGBENCH_STORE", raising=False)
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        for name in ("config", "bench"):
            cfg = OmegaConf.to_container(compose(name), resolve=True)
            assert cfg["paths"]["cache_dir"] == "~/.cache/lsgbench"
            assert cfg["paths"]["store_dir"] == "results/runs"


def test_records_say_how_much_the_length_limit_cut(make_cfg, tmp_path):
    r = run_and_read(make_cfg, tmp_path, *KEYS_SMALL, "model=roberta", "model.max_length=64", "trainer.args.max_steps=1")
    cut = r["provenance"]["truncation"]
    assert cut["train"]["examples"] == 24 and cut["eval"]["examples"] == 8
    assert cut["eval"]["inputs_cut"] == 8 and 0.3 < cut["eval"]["inputs_dropped_share"] < 1
    assert "targets_cut" not in cut["eval"]  # class labels are not cut
    assert "eval: 8 of 8 inputs cut, " in summary(r)


def test_truncation_figures_by_hand():
    from datasets import Dataset

    ds = Dataset.from_dict({"input_length": [100, 50, 200, 400], "target_length": [10, 30, 20, 20]})
    assert truncation(ds, 100, 20) == {
        "examples": 4, "inputs_cut": 2, "inputs_dropped_share": (100 + 300) / 750,  # of the split's 750 tokens
        "inputs_cut_mean_share": (0.5 + 0.75) / 2, "inputs_cut_max_share": 0.75,  # among the two cut inputs
        "targets_cut": 1, "targets_dropped_share": 10 / 80, "targets_cut_mean_share": 1 / 3,
        "targets_cut_max_share": 1 / 3}
    assert truncation(ds, 400, None) == {"examples": 4, "inputs_cut": 0, "inputs_dropped_share": 0.0}


def test_one_very_long_document_is_reported_as_what_it_lost(make_cfg, tmp_path):
    """A 200,000-word document among 8: the summary says how much of the split and of that input was cut,
    where a mean over all inputs said 12%."""
    rows = [{"id": f"d{i}", "text": f"a short review number {i} of the film", "label": ["neg", "pos"][i % 2]}
            for i in range(8)]
    rows[3]["text"] = " ".join(["word"] * 200_000)
    data_dir = write_local_task(tmp_path / "d", {"train": [{**r, "id": f"t{r['id']}", "text": "train " + r["text"]}
                                                           for r in rows[:4]], "test": rows})
    r = run_and_read(make_cfg, tmp_path, "task=imdb", f"task.data_dir={data_dir}", "model=roberta",
                     "model.max_length=512", "trainer.args.max_steps=1")
    assert r["status"] == "ok", r["error"]
    cut = r["provenance"]["truncation"]["eval"]
    long_input = cut["inputs_cut_max_share"]  # the byte-level BPE makes each " word" one token (+ <s>, </s>)
    assert cut["inputs_cut"] == 1 and long_input == pytest.approx(1 - 512 / 200_002)
    assert cut["inputs_dropped_share"] > 0.99  # the long document is nearly all of the split's tokens
    assert f"eval: 1 of 8 inputs cut, {100 * cut['inputs_dropped_share']:.1f}% of the split's tokens dropped " \
           f"(one input lost {100 * long_input:.1f}%)" in summary(r)


def test_reuse_sees_edited_data(make_cfg, tmp_path):
    rows = {s: [{"id": f"{s}{i}", "text": f"{s} words {i} " * 20, "label": ["neg", "pos"][i % 2]} for i in range(8)]
            for s in ("train", "test")}
    data_dir = write_local_task(tmp_path / "d", rows)
    overrides = ["task=imdb", f"task.data_dir={data_dir}", "model=roberta", "trainer.args.max_steps=1"]
    first = run(make_cfg(*TINY, *overrides), tmp_path / "a", overrides)
    again = run(make_cfg(*TINY, *overrides), tmp_path / "b", overrides)
    assert first["status"] == "ok" and again.get("reused") and again["run_id"] == first["run_id"]
    rows["test"][0]["text"] = "an edited review"
    write_local_task(tmp_path / "d", rows)
    edited = run(make_cfg(*TINY, *overrides), tmp_path / "c", overrides)
    assert not edited.get("reused") and edited["status"] == "ok"
    assert edited["provenance"]["data_fingerprint"] != first["provenance"]["data_fingerprint"]


def test_ctrl_c_during_training_leaves_an_interrupted_record_with_the_figures_so_far(make_cfg, tmp_path, monkeypatch):
    from lsgbench.train import MeasuredTrainer

    step = MeasuredTrainer.training_step

    def interrupted_at_the_third_step(self, *args, **kwargs):
        if len(self.token_log) == 2:
            raise KeyboardInterrupt
        return step(self, *args, **kwargs)

    monkeypatch.setattr(MeasuredTrainer, "training_step", interrupted_at_the_third_step)
    cfg = make_cfg(*TINY, *KEYS_SMALL, "model=roberta", "trainer.args.max_steps=6")
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "out", [])
    r = json.loads((tmp_path / "out" / "run_record.json").read_text())
    assert (r["status"], r["stage"], r["error"]) == ("interrupted", "train", "interrupted during train")
    assert r["efficiency"]["train_steps"] == 2 and r["efficiency"]["train_tokens"] > 0
    assert read_records([cfg.paths.store_dir]) == [r]


def test_an_unwritable_store_is_reported_before_any_work(make_cfg, tmp_path):
    (tmp_path / "a_file").write_text("")
    cfg = make_cfg(*TINY, *KEYS_SMALL, "model=roberta", f"paths.store_dir={tmp_path / 'a_file' / 'store'}")
    r = run(cfg, tmp_path / "out", [])
    assert r["status"] == "invalid" and r["stage"] == "setup" and r["provenance"]["n_train"] is None
    assert "paths.store_dir=" in r["error"] and "is not writable" in r["error"]
    assert json.loads((tmp_path / "out" / "run_record.json").read_text())["run_id"] == r["run_id"]


def test_records_name_the_backend_lsgbench_kernels_ran_on_in_each_phase(make_cfg, tmp_path):
    r = run_and_read(make_cfg, tmp_path, *KEYS_SMALL, "model=lsg_roberta", "model.max_length=256",
                     "model.attention.block_size=32", "model.attention.sparse_block_size=32",
                     "model.attention.dropout=0.2", "trainer.args.max_steps=2")
    assert r["status"] == "ok" and r["attention"]["dropout"] == 0.2
    assert r["attention_backend"] == {"train": {"backend": "blocks", "dropout": 0.2},
                                      "eval": {"backend": "blocks", "dropout": 0.0}}


def test_an_evaluation_only_run_reads_the_whole_evaluation_file_and_needs_no_training_split(make_cfg, tmp_path):
    """trainer.trainable=none trains nothing: a folder with only test.jsonl is evaluated whole (nothing carved, no
    overlap to check, no training figures); a run that trains is refused on the same folder, naming the fix."""
    from lsgbench.synthetic import keys_rows

    rows = keys_rows("test", 12, label_names=["amber", "cobalt"], doc_words=80, num_keys=3, num_distractors=0,
                     key_start=0.5, seed=0)
    data_dir = write_local_task(tmp_path / "only_test", {"test": rows})
    task = ["task=classification", "task.name=mine", f"task.data_dir={data_dir}", "task.label_names=[amber,cobalt]",
            "model=roberta"]
    r = run_and_read(make_cfg, tmp_path, *task, "trainer.trainable=none")
    assert r["status"] == "ok", r["error"]
    prov = r["provenance"]
    assert (prov["n_train"], prov["n_eval"], prov["eval_overlap"]) == (0, 12, 0) and prov["trainable"]["parameters"] == 0
    assert prov["splits"] == {"train": None, "eval": "test.jsonl"} and list(prov["truncation"]) == ["eval"]
    assert "train_tokens_per_s" not in r["efficiency"] and r["efficiency"]["eval_tokens_per_s"] > 0
    assert set(r["metrics"]) == {"accuracy", "f1_macro", "f1_micro"}
    assert "evaluation only (trainer.trainable=none): 'test' read whole, no training split" in prov["data_notes"]
    printed = summary(r)
    assert "n_train=0 n_eval=12" in printed and "efficiency: device=cpu  eval " in printed
    trains = run(make_cfg(*TINY, *task), tmp_path / "trains", [])
    assert trains["status"] == "invalid" and f"local:{data_dir} has no 'train' split; it has ['test']" in trains["error"]


def test_the_suggested_fix_for_a_lone_validation_split_runs(make_cfg, tmp_path):
    """A folder with only validation.jsonl: the error suggests training on it and carving test from it, and that
    suggestion runs (it once fell back to evaluating on validation, the training split, and was refused)."""
    from lsgbench.synthetic import keys_rows

    rows = keys_rows("validation", 24, label_names=["amber", "cobalt"], doc_words=80, num_keys=3, num_distractors=0,
                     key_start=0.5, seed=0)
    data_dir = write_local_task(tmp_path / "only_validation", {"validation": rows})
    task = ["task=classification", "task.name=mine", f"task.data_dir={data_dir}", "task.label_names=[amber,cobalt]",
            "model=roberta", "trainer.args.max_steps=1"]
    hint = "task.train_split=validation task.eval_split=test"
    r = run_and_read(make_cfg, tmp_path, *task, *hint.split())
    assert r["status"] == "ok", r["error"]
    assert r["provenance"]["splits"]["eval"].startswith("carved from validation.jsonl")
    refused = run(make_cfg(*TINY, *task), tmp_path / "refused", [])
    assert refused["status"] == "invalid" and hint in refused["error"]
