import json

import pytest

from lsgbench.data import load_task_data, tokenize
from lsgbench.errors import ConfigError
from lsgbench.tokenizer import train_tokenizer

from helpers import shared_data


def write_jsonl(folder, split, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_imdb_sample_loads_from_local_jsonl(make_cfg):
    cfg = make_cfg("task=imdb", f"task.data_dir={shared_data('imdb')}")
    data = load_task_data(cfg.task)
    assert data.source.startswith("local:") and data.notes == []
    assert len(data.train) == 1000 and len(data.eval) == 1000
    assert {r["label"] for r in data.eval} == {0, 1}
    assert sum(r["label"] for r in data.eval) == 500  # 500 pos of 1000


def test_missing_validation_is_carved_from_train_with_a_fixed_seed(make_cfg):
    cfg = make_cfg("task=imdb", f"task.data_dir={shared_data('imdb')}", "task.eval_split=validation")
    first, second = load_task_data(cfg.task), load_task_data(cfg.task)
    assert len(first.eval) == 100 and len(first.train) == 900
    assert [r["id"] for r in first.eval] == [r["id"] for r in second.eval]
    assert not {r["id"] for r in first.eval} & {r["id"] for r in first.train}
    assert "carved" in first.notes[0]


def test_hyperpartisan_single_split_yields_disjoint_train_and_test(make_cfg):
    cfg = make_cfg("task=hyperpartisan", f"task.data_dir={shared_data('hyperpartisan')}")
    data = load_task_data(cfg.task)
    assert len(data.eval) == 64 and len(data.train) == 645 - 64
    assert not {r["id"] for r in data.eval} & {r["id"] for r in data.train}


@pytest.mark.parametrize("folder, n_eval", [("pubmed_summ", 100), ("arxiv_summ", 100)])
def test_summarization_samples_load(make_cfg, folder, n_eval):
    task = folder.split("_")[0]
    cfg = make_cfg(f"task={task}", f"task.data_dir={shared_data(folder)}", "task.max_train_samples=10")
    data = load_task_data(cfg.task)
    assert len(data.train) == 10 and len(data.eval) == n_eval
    assert all(r["article"] and r["abstract"] for r in data.eval)


def test_env_root_names_the_task_folder(make_cfg, tmp_path, monkeypatch):
    write_jsonl(tmp_path / "data" / "imdb", "train", [{"id": "a", "text": "good", "label": "pos"}])
    write_jsonl(tmp_path / "data" / "imdb", "test", [{"id": "b", "text": "bad", "label": "neg"}])
    monkeypatch.setenv("LSGBENCH_DATA_DIR", str(tmp_path / "data"))
    data = load_task_data(make_cfg("task=imdb").task)
    assert data.source == f"local:{tmp_path / 'data' / 'imdb'}"
    assert data.eval == [{"id": "b", "text": "bad", "label": 0}]


GOOD_ROWS = {"imdb": {"text": "fine", "label": "neg"}, "pubmed": {"article": "text", "abstract": "s"}}


@pytest.mark.parametrize("task, row, message", [
    ("imdb", {"id": "x", "review": "fine", "label": "pos"}, "has no 'text' column"),
    ("imdb", {"id": "x", "text": "fine", "label": "great"},
     "label 'great', which is not one of task.label_names \\['neg', 'pos'\\]"),
    ("imdb", {"id": "x", "text": "   ", "label": "pos"}, "empty 'text'"),
    ("pubmed", {"id": "x", "article": None, "abstract": "s"}, "empty 'article' \\(or one that is not a string\\)"),
    ("pubmed", {"id": "x", "article": "text", "abstract": ["a", "list"]},
     "example 'x' has an empty or non-text 'abstract' \\(list\\)"),
])
def test_bad_local_rows_get_clear_errors(make_cfg, tmp_path, task, row, message):
    write_jsonl(tmp_path / "d", "train", [{"id": "ok", **GOOD_ROWS[task]}, row])
    write_jsonl(tmp_path / "d", "test", [{"id": "t", **GOOD_ROWS[task]}])
    with pytest.raises(ConfigError, match=message):
        load_task_data(make_cfg(f"task={task}", f"task.data_dir={tmp_path / 'd'}").task)


def test_missing_local_folder_and_bad_json_are_reported(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="is not a directory"):
        load_task_data(make_cfg("task=imdb", f"task.data_dir={tmp_path / 'nope'}").task)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.jsonl").write_text('{"id": 1, "text": "a", "label": "pos"}\n{oops\n')
    with pytest.raises(ConfigError, match="line 2 is not valid JSON"):
        load_task_data(make_cfg("task=imdb", f"task.data_dir={tmp_path / 'd'}").task)


def test_offline_hub_dataset_names_the_three_fixes(make_cfg, monkeypatch):
    monkeypatch.delenv("LSGBENCH_DATA_DIR", raising=False)
    with pytest.raises(ConfigError) as err:
        load_task_data(make_cfg("task=pubmed").task)
    message = str(err.value)
    assert "ccdv/pubmed-summarization" in message
    assert "task.data_dir" in message and "LSGBENCH_DATA_DIR" in message and "task=synth_keys" in message


def test_subsampling_is_seeded_and_bounded(make_cfg):
    cfg = make_cfg("task=synth_keys", "task.max_train_samples=50", "task.max_eval_samples=7",
                   "task.synthetic.doc_words=64")
    a, b = load_task_data(cfg.task), load_task_data(cfg.task)
    assert len(a.train) == 50 and len(a.eval) == 7 and a.train == b.train
    with pytest.raises(ConfigError, match="task.max_train_samples=0"):
        load_task_data(make_cfg("task=synth_keys", "task.max_train_samples=0").task)


def test_tokenized_cache_is_keyed_by_lengths(make_cfg, tmp_path):
    task = make_cfg("task=synth_keys", "task.synthetic.doc_words=64", "task.max_train_samples=20").task
    data = load_task_data(task)
    tok = train_tokenizer([r["text"] for r in data.train], 500, tmp_path)
    long = tokenize(data.train, tok, task, 128, tmp_path)
    short = tokenize(data.train, tok, task, 16, tmp_path)
    again = tokenize(data.train, tok, task, 16, tmp_path)
    assert max(map(len, short["input_ids"])) == 16 < max(map(len, long["input_ids"]))
    assert again["input_ids"] == short["input_ids"] and len(list((tmp_path / "tokenized").iterdir())) == 2
    assert short["labels"] == [r["label"] for r in data.train]


def test_a_folder_with_one_split_suggests_training_on_it(make_cfg, tmp_path):
    write_jsonl(tmp_path / "d", "test", [{"id": "t", "text": "fine", "label": "neg"}])
    with pytest.raises(ConfigError, match=r"has no 'train' split; it has \['test'\] \(to train on it: task.train_split=test\)"):
        load_task_data(make_cfg("task=imdb", f"task.data_dir={tmp_path / 'd'}").task)


def test_duplicate_ids_are_an_error_naming_the_id(make_cfg, tmp_path):
    write_jsonl(tmp_path / "d", "train", [{"id": "a", "text": "fine", "label": "neg"}] * 2)
    write_jsonl(tmp_path / "d", "test", [{"id": "t", "text": "fine", "label": "neg"}])
    with pytest.raises(ConfigError, match="the id 'a' appears more than once"):
        load_task_data(make_cfg("task=imdb", f"task.data_dir={tmp_path / 'd'}").task)


def test_a_byte_that_is_not_utf8_is_named_with_its_line(make_cfg, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.jsonl").write_bytes(b'{"id": "a", "text": "fine", "label": "neg"}\n{"id": "b", "text": "caf\xe9"}\n')
    with pytest.raises(ConfigError, match=r"train.jsonl line 2 is not UTF-8 text \(byte 0xe9 at column 25\)"):
        load_task_data(make_cfg("task=imdb", f"task.data_dir={tmp_path / 'd'}").task)
