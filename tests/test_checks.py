"""Every key of a run's config is read or refused, every number is checked, before anything is read or built;
a refused run is on record (status invalid) and listed by the report under its table."""

import json

import pytest
from omegaconf import OmegaConf

from lsgbench.checks import check_run_config
from lsgbench.cli import summary
from lsgbench.errors import ConfigError
from lsgbench.pipeline import run
from lsgbench.record import read_records
from lsgbench.report import main as report

QUICK = ["model.init=random", "model.size=tiny", "task.synthetic.doc_words=80", "task.synthetic.n_train=16",
         "task.synthetic.n_test=4", "trainer.args.max_steps=1"]


@pytest.mark.parametrize("override, message", [
    ("+task.hypothesis_column=hypothesis", "task.hypothesis_column is not a key lsgbench reads: task (classification "
                                          "tasks) has allow_eval_overlap, carve_fraction, columns,"),
    ("+task.anything=1", "task.anything is not a key lsgbench reads"),
    ("+task.max_train_sample=5", "did you mean task.max_train_samples?"),
    ("+model.anything=1", "model.anything is not a key lsgbench reads: model has attention, eval_max_length, family, init,"),
    ("+model.max_lenght=1024", "did you mean model.max_length?"),
    ("+paths.anything=1", "paths.anything is not a key lsgbench reads: paths has cache_dir, runs_dir, store_dir, "
                          "sweeps_dir"),
    ("+trainer.anything=1", "trainer.anything is not a key lsgbench reads: trainer has args, bf16, device, name"),
    ("+logger.project=x", "logger.project is not a key lsgbench reads: logger has name"),
    ("+anything=1", "anything is not a key lsgbench reads: the top level has debug, force, logger, model, paths, "
                    "pretrain, save_model, seed, task, trainer"),
    ("+trainer.args.learning_rat=1e-4", "trainer.args.learning_rat is not a key lsgbench reads: trainer.args "
                                        "(transformers.TrainingArguments) has"),
    ("+trainer.args.seed=3", "trainer.args.seed is set by lsgbench from seed; set that instead"),
    ("+task.synthetic.num_key=3", "task.synthetic.num_key is not a key lsgbench reads: task.synthetic (the 'keys' "
                                  "generator) has doc_words, generator, key_start, n_test, n_train, n_validation, "
                                  "num_distractors, num_keys, seed; did you mean task.synthetic.num_keys?"),
])
def test_an_unknown_key_anywhere_is_refused_naming_it_and_what_exists(make_cfg, override, message):
    with pytest.raises(ConfigError, match=None) as err:
        check_run_config(make_cfg("experiment=quickstart", override))
    assert message in str(err.value)


def test_keys_of_the_summarization_kind_and_its_generation_settings(make_cfg):
    for override, message in [
        ("+task.label_names=[a,b]", "task.label_names is not a key lsgbench reads: task (summarization tasks)"),
        ("+task.generation.num_beam=2", "task.generation.num_beam is not a key lsgbench reads: task.generation "
                                        "(transformers.GenerationConfig) has"),
        ("+task.generation.max_length=64", "task.generation.max_length is not a key lsgbench reads"),
        ("task.metrics=[rouge1,bleu]", "task.metrics: summarization computes no ['bleu']; it has ['rouge1', "),
    ]:
        with pytest.raises(ConfigError) as err:
            check_run_config(make_cfg("task=synth_extract", override))
        assert message in str(err.value), override
    with pytest.raises(ConfigError) as err:
        check_run_config(make_cfg("task=synth_extract", "+task.generation.num_beam=2", "+model.foo=1"))
    assert str(err.value).startswith("2 problems:\n- ")  # every mistake at once


@pytest.mark.parametrize("override, message", [
    ("model.max_length=-5", "model.max_length=-5 must be an integer >= 1 or null"),
    ("model.max_length=0", "model.max_length=0 must be an integer >= 1 or null"),
    ("model.max_length=abc", "model.max_length='abc' must be an integer >= 1 or null"),
    ("model.max_length=512.5", "model.max_length=512.5 must be an integer >= 1 or null"),
    ("task.max_train_samples=0", "task.max_train_samples=0 must be an integer >= 1 or null"),
    ("task.max_eval_samples=-1", "task.max_eval_samples=-1 must be an integer >= 1 or null"),
    ("task.max_source_length=0", "task.max_source_length=0 must be an integer >= 1"),
    ("task.carve_fraction=0.7", "task.carve_fraction=0.7 must be a number > 0 and < 0.5"),
    ("task.min_eval_examples=-3", "task.min_eval_examples=-3 must be an integer >= 0"),
    ("task.synthetic.n_train=-2", "task.synthetic.n_train=-2 must be an integer >= 0"),
    ("trainer.args.per_device_train_batch_size=0", "trainer.args.per_device_train_batch_size=0 must be an integer >= 1"),
    ("trainer.args.per_device_eval_batch_size=two", "trainer.args.per_device_eval_batch_size='two' must be an integer"),
    ("trainer.args.num_train_epochs=0", "trainer.args.num_train_epochs=0 must be a number > 0"),
    ("trainer.args.gradient_accumulation_steps=0", "trainer.args.gradient_accumulation_steps=0 must be an integer >= 1"),
    ("trainer.args.learning_rate=-1e-3", "trainer.args.learning_rate=-0.001 must be a number >= 0"),
    ("seed=-1", "seed=-1 must be an integer >= 0"),
    ("model.tokenizer_vocab_size=50", "model.tokenizer_vocab_size=50 must be an integer >= 300"),
])
def test_numbers_are_checked_naming_key_value_and_range(make_cfg, override, message):
    with pytest.raises(ConfigError) as err:
        check_run_config(make_cfg("experiment=quickstart", override))
    assert message in str(err.value)


@pytest.mark.parametrize("override, message", [
    ("task.max_target_length=0", "task.max_target_length=0 must be an integer >= 1"),
    ("task.generation.num_beams=0", "task.generation.num_beams=0 must be an integer >= 1"),
    ("task.generation.max_new_tokens=-1", "task.generation.max_new_tokens=-1 must be an integer >= 1"),
    ("task.generation.min_new_tokens=200", "task.generation.min_new_tokens=200 is above "
                                            "task.generation.max_new_tokens=96"),
])
def test_summarization_lengths_and_generation_settings_are_checked(make_cfg, override, message):
    with pytest.raises(ConfigError) as err:
        check_run_config(make_cfg("task=synth_extract", override))
    assert message in str(err.value)


def test_the_shipped_configs_pass_the_check(make_cfg):
    """Every task, model and trainer file composes into a config whose every key is one lsgbench reads."""
    from lsgbench.config import shipped_dir

    conf = shipped_dir("conf")
    tasks = [p.stem for p in (conf / "task").glob("*.yaml")]
    for task in tasks:
        labels = ["task.label_names=[a,b]"] if task == "classification" else []
        check_run_config(make_cfg(f"task={task}", *labels))
    for model in (p.stem for p in (conf / "model").glob("*.yaml")):
        check_run_config(make_cfg(f"model={model}"))
    for trainer in ("default", "cpu", "gpu"):
        check_run_config(make_cfg(f"trainer={trainer}", "logger=wandb"))
    for group in ("experiment", "sweep", "launcher"):
        for option in (p.stem for p in (conf / group).glob("*.yaml") if p.stem != "ray"):  # ray: not installed here
            check_run_config(make_cfg(f"{group}={option}", "model.max_length=1024"))  # a sweep point's length


@pytest.mark.parametrize("max_length", ["-5", "0", "abc"])
def test_a_bad_max_length_is_an_invalid_run_on_record_not_a_traceback(make_cfg, tmp_path, max_length):
    cfg = make_cfg("experiment=quickstart", *QUICK, f"model.max_length={max_length}")
    r = run(cfg, tmp_path / "out", [f"model.max_length={max_length}"])
    assert (r["status"], r["stage"]) == ("invalid", "setup") and r["provenance"]["dataset"] is None
    assert r["error"].startswith(f"model.max_length={max_length if max_length != 'abc' else repr('abc')} must be")
    assert read_records([cfg.paths.store_dir]) == [json.loads((tmp_path / "out" / "run_record.json").read_text())]


def test_a_length_the_tokenizer_fills_with_special_tokens_is_refused_before_the_model_is_built(make_cfg, tmp_path):
    r = run(make_cfg("experiment=quickstart", *QUICK, "model.max_length=2"), tmp_path / "out", [])
    assert r["status"] == "invalid"
    assert "an input length of 2 tokens (model.max_length, else task.max_source_length, or model.eval_max_length) leaves no room for text: " \
           "the tokenizer adds 2 special tokens" in r["error"]


def test_a_refused_sweep_point_is_listed_by_the_report_under_its_table(make_cfg, tmp_path, capsys):
    good = ["experiment=quickstart", *QUICK]
    ok = run(make_cfg(*good), tmp_path / "a", good)
    bad = [*good, "+task.hypothesis_column=hypothesis"]
    refused = run(make_cfg(*bad), tmp_path / "b", bad, sweep="sweep-1")
    assert ok["status"] == "ok" and refused["status"] == "invalid"
    assert "run " + refused["run_id"] + ": invalid" in summary(refused)
    store = make_cfg().paths.store_dir
    assert report([store, "--format", "md"]) == 0
    out = capsys.readouterr().out
    table_rows = [line for line in out.splitlines() if line.startswith("| synth_keys")]
    assert len(table_rows) == 1  # the refused run is no row of the table...
    assert f"- refused before training (invalid), {refused['run_id']}: " in out  # ...but listed under it
    assert "+task.hypothesis_column=hypothesis: task.hypothesis_column is not a key lsgbench reads" in out
    assert report([store, "--format", "md", "--status", "invalid"]) == 0
    assert "refused before training" in capsys.readouterr().out


def test_a_data_mistake_fixed_and_rerun_supersedes_its_refused_record(make_cfg, tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    rows = [{"id": f"r{i}", "text": f"review {i} " * 8, "label": ["neg", "pos"][i % 2]} for i in range(24)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:20]))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[16:]))  # 4 shared with train
    overrides = ["task=imdb", f"task.data_dir={folder}", "model=roberta", "model.init=random", "model.size=tiny",
                 "trainer.args.max_steps=1"]
    refused = run(make_cfg(*overrides), tmp_path / "a", overrides)
    assert refused["status"] == "invalid" and "4 of 8 evaluation examples (test) have the 'text'" in refused["error"]
    store = make_cfg().paths.store_dir
    assert report([store]) == 0 and "refused before training" in capsys.readouterr().out
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[20:]))  # fixed
    assert run(make_cfg(*overrides), tmp_path / "b", overrides)["status"] == "ok"
    assert report([store]) == 0
    assert "refused before training" not in capsys.readouterr().out  # the same configuration ran since


@pytest.mark.parametrize("overrides, message", [
    (["+model.attention.blok_size=64"], "model.attention.blok_size is not a key lsgbench reads: model.attention "
                                        "(lsg attention) has backend, block_size, dropout, mask_first_token, num_global_tokens,"),
    (["+model.attention.blok_size=64"], "did you mean model.attention.block_size?"),
    (["model.attention.block_size=30", "model.attention.sparsity_factor=4"],
     "lsg attention: block_size=30 must be divisible by sparsity_factor=4"),
    (["model.attention.type=lsgg"], "model.attention.type='lsgg' is unknown; choose one of"),
])
def test_attention_knobs_are_checked_with_the_rest_before_any_data_is_read(make_cfg, overrides, message):
    with pytest.raises(ConfigError) as err:
        check_run_config(make_cfg("experiment=quickstart", "model=lsg_roberta", *overrides))
    assert message in str(err.value)


def test_a_config_that_does_not_resolve_is_an_invalid_run(make_cfg, tmp_path):
    r = run(make_cfg("sweep=length_scaling"), tmp_path / "out", ["sweep=length_scaling"])  # max_length: set by -m
    assert r["status"] == "invalid" and r["error"].startswith("the config does not resolve: ")


@pytest.mark.parametrize("override, message", [
    ("task.hub=foo", "task.hub='foo' must be a mapping of keys"),
    ("task.metrics=null", "task.metrics=None must list metrics; classification has ['accuracy', "),
    ("task.metrics=[accuracy,bleu]", "task.metrics: classification computes no ['bleu']"),
])
def test_a_value_of_the_wrong_shape_is_named(make_cfg, override, message):
    with pytest.raises(ConfigError) as err:
        check_run_config(make_cfg("experiment=quickstart", override))
    assert message in str(err.value)


def test_each_kind_computes_exactly_the_metrics_it_declares():
    from lsgbench.kinds import KINDS

    task = OmegaConf.create({"rouge_lsum_split": "lines"})
    assert set(KINDS["classification"].metrics([0, 1], [0, 0], 0, task)) == set(KINDS["classification"].metric_names)
    assert set(KINDS["summarization"].metrics(["a b"], ["a c"], 2, task)) == set(KINDS["summarization"].metric_names)


def test_a_small_evaluation_set_and_an_allowed_overlap_are_flagged_in_the_summary_and_record(make_cfg, tmp_path):
    overrides = ["experiment=quickstart", *QUICK, "task.train_split=test", "task.allow_eval_overlap=true"]
    r = run(make_cfg(*overrides), tmp_path / "out", overrides)
    assert r["status"] == "ok", r["error"]
    prov = r["provenance"]
    assert (prov["n_eval"], prov["eval_overlap"], prov["small_eval"]) == (4, 4, True)
    assert prov["splits"] == {"train": "generated test", "eval": "generated test"}
    text = summary(r)
    assert "warning:    4 of 4 evaluation examples are also in training (task.allow_eval_overlap=true)" in text
    assert "warning:    only 4 evaluation examples (task.min_eval_examples=20): one example is 25% of the set" in text
    assert "metrics:    (n=4) accuracy=" in text


def test_the_report_marks_rows_with_caveats_and_names_the_commits(make_cfg, tmp_path, capsys):
    overrides = ["experiment=quickstart", *QUICK, "task.train_split=test", "task.allow_eval_overlap=true"]
    r = run(make_cfg(*overrides), tmp_path / "out", overrides)
    assert report([str(tmp_path / "out"), "--format", "md"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| synth_keys"))
    assert row.endswith("| 1/1 | ok † |") and "| 4 |" in row  # n eval
    assert "- † 4 of 4 evaluation examples are also in training (task.allow_eval_overlap=true): synth_keys / roberta " \
           "/ full / 512" in out
    commit = (r["env"]["git_commit"] or "unknown")[:7]
    assert f"- made by lsgbench commit {commit}" in out and "(1 run)" in out
