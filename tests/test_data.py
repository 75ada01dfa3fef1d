import json
import re

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
    # 10% is 100 reviews; the sample's train split holds one review twice, and its copy goes along
    assert len(first.eval) == 101 and len(first.train) == 899
    assert [r["id"] for r in first.eval] == [r["id"] for r in second.eval]
    assert not {r["text"] for r in first.eval} & {r["text"] for r in first.train} and first.eval_overlap == 0
    assert "carved" in first.notes[0]
    assert first.splits == {"train": "train.jsonl", "eval": "carved from train.jsonl (10%, seed 0)"}


def test_hyperpartisan_single_split_yields_disjoint_train_and_test(make_cfg):
    cfg = make_cfg("task=hyperpartisan", f"task.data_dir={shared_data('hyperpartisan')}")
    data = load_task_data(cfg.task)
    # 10% is 64 articles; one article is in the sample twice (ids 0000012 and another), and both copies are
    # carved: before, one copy was trained on and the other tested
    assert len(data.eval) == 65 and len(data.train) == 645 - 65
    assert not {r["text"] for r in data.eval} & {r["text"] for r in data.train}


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


REVIEWS = [{"id": f"r{i}", "text": f"review number {i} " * 5, "label": ["neg", "pos"][i % 2]} for i in range(40)]


def test_a_folder_with_one_split_suggests_training_on_it_and_evaluating_on_a_carved_part(make_cfg, tmp_path):
    write_jsonl(tmp_path / "d", "test", REVIEWS)
    hint = "(to train on it and evaluate on a part carved from it: task.train_split=test task.eval_split=validation)"
    with pytest.raises(ConfigError, match=re.escape(f"has no 'train' split; it has ['test'] {hint}")):
        load_task_data(make_cfg("task=imdb", f"task.data_dir={tmp_path / 'd'}").task)
    data = load_task_data(make_cfg("task=imdb", f"task.data_dir={tmp_path / 'd'}", "task.train_split=test",
                                   "task.eval_split=validation").task)
    assert (len(data.train), len(data.eval), data.eval_overlap) == (36, 4, 0)
    assert data.splits == {"train": "test.jsonl", "eval": "carved from test.jsonl (10%, seed 0)"}


def test_training_on_the_evaluation_split_is_refused_unless_allowed(make_cfg, tmp_path):
    write_jsonl(tmp_path / "d", "test", REVIEWS)
    overrides = ["task=imdb", f"task.data_dir={tmp_path / 'd'}", "task.train_split=test"]
    with pytest.raises(ConfigError, match="task.train_split and task.eval_split are both 'test': the run would "
                                          "evaluate on the examples it trains on.*task.allow_eval_overlap=true"):
        load_task_data(make_cfg(*overrides).task)
    data = load_task_data(make_cfg(*overrides, "task.allow_eval_overlap=true").task)
    assert data.train == data.eval and data.eval_overlap == 40


def test_evaluation_examples_whose_text_is_in_training_are_refused_unless_allowed(make_cfg, tmp_path):
    copies = [{**REVIEWS[3], "id": "copy-a", "text": "  " + REVIEWS[3]["text"].upper().lower() + "\n"},
              {**REVIEWS[7], "id": "copy-b", "label": "neg"}]  # whitespace and label aside, the same review
    write_jsonl(tmp_path / "d", "train", REVIEWS)
    write_jsonl(tmp_path / "d", "test", [{"id": "new", "text": "an unseen review", "label": "pos"}, *copies])
    overrides = ["task=imdb", f"task.data_dir={tmp_path / 'd'}"]
    with pytest.raises(ConfigError, match="2 of 3 evaluation examples \\(test\\) have the 'text' of a training "
                                          "example \\(train\\), e.g. eval id 'copy-a' = train id 'r3'"):
        load_task_data(make_cfg(*overrides).task)
    assert load_task_data(make_cfg(*overrides, "task.allow_eval_overlap=true").task).eval_overlap == 2


@pytest.mark.parametrize("name", ["val", "valid", "dev", "validation"])
def test_val_valid_and_dev_files_are_the_validation_split(make_cfg, tmp_path, name):
    write_jsonl(tmp_path / "d", "train", REVIEWS[:32])
    write_jsonl(tmp_path / "d", name, REVIEWS[32:])
    write_jsonl(tmp_path / "d", "train_old", REVIEWS[:4])
    data = load_task_data(make_cfg("task=imdb", f"task.data_dir={tmp_path / 'd'}").task)
    # no test split: the validation file is the evaluation set, not a carved tenth of train
    assert (len(data.train), len(data.eval)) == (32, 8) and data.splits == {"train": "train.jsonl", "eval": f"{name}.jsonl"}
    assert any("no 'test' split: evaluating on 'validation'" in note for note in data.notes)
    assert any("holds ['train_old.jsonl'], which lsgbench does not read" in note for note in data.notes)


def test_two_validation_files_are_an_error(make_cfg, tmp_path):
    for split in ("train", "val", "dev"):
        write_jsonl(tmp_path / "d", split, REVIEWS)
    with pytest.raises(ConfigError, match=r"holds \['val.jsonl', 'dev.jsonl'\], which are all the validation split"):
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


def test_a_carved_split_that_leaves_nothing_is_an_error(make_cfg, tmp_path):
    write_jsonl(tmp_path / "d", "train", REVIEWS[:1])
    with pytest.raises(ConfigError, match="no evaluation examples are left \\(carved from train.jsonl"):
        load_task_data(make_cfg("task=imdb", f"task.data_dir={tmp_path / 'd'}").task)


def test_a_folder_with_only_a_validation_split_suggests_carving_a_test_split(make_cfg, tmp_path):
    write_jsonl(tmp_path / "d", "dev", REVIEWS)
    with pytest.raises(ConfigError, match=re.escape("task.train_split=validation task.eval_split=test)")):
        load_task_data(make_cfg("task=imdb", f"task.data_dir={tmp_path / 'd'}").task)


def test_byte_splits_cut_one_stream_into_whole_characters(make_cfg, tmp_path):
    """enwik8's layout: the source's train split is one stream, cut by byte offsets. Offsets inside a multi-byte
    character move forward to its start; each split is exactly its bytes of the stream."""
    docs = ["ab€cd", "é𝄞xyz"]  # joined: a b €(bytes 2-4) c d é(7-8) 𝄞(9-12) x y z, 16 bytes
    write_jsonl(tmp_path / "d", "train", [{"id": f"doc{i}", "text": t} for i, t in enumerate(docs)])
    stream = "".join(docs).encode()
    cfg = make_cfg("task=enwik8", f"task.data_dir={tmp_path / 'd'}",
                   "task.byte_splits={train:[0,4],validation:[4,8],test:[8,16]}")
    data = load_task_data(cfg.task)
    assert [r["text"] for r in data.train] == ["ab€"]  # 4 falls inside €: moved to 5
    assert [r["text"] for r in data.eval] == ["𝄞xyz"]  # 8 falls inside é: moved to 9
    assert data.splits == {"train": "bytes 0-5 of train.jsonl", "eval": "bytes 9-16 of train.jsonl"}  # as read
    assert "one stream of 16 bytes" in data.notes[0]
    assert "task.byte_splits.train: [0, 4] falls inside a UTF-8 character; read as [0, 5]" in data.notes[1]
    validation = load_task_data(make_cfg("task=enwik8", f"task.data_dir={tmp_path / 'd'}", "task.eval_split=validation",
                                         "task.byte_splits={train:[0,4],validation:[4,8],test:[8,16]}").task)
    pieces = [data.train[0]["text"], validation.eval[0]["text"], data.eval[0]["text"]]
    assert "".join(pieces).encode() == stream  # contiguous spans: nothing lost, nothing read twice


@pytest.mark.parametrize("splits, message", [
    ("{train:[0,8],test:[6,16]}", r"train \[0, 8\] and test \[6, 16\] overlap"),
    ("{train:[5,2],test:[8,16]}", r"task.byte_splits.train=\[5, 2\] must be \[start, end\]"),
    ("{train:7,test:[8,16]}", r"task.byte_splits.train=\[7\] must be \[start, end\]"),
    ("{train:[0,8],test:[8,99]}", r"task.byte_splits.validation=\[90000000, 95000000\] reaches byte 95,000,000, "
                                  r"but local:.* \(train.jsonl\) holds 16 bytes"),  # an override keeps enwik8's other splits
    ("{train:[0,8],validation:[8,12],test:[12,99]}", r"test=\[12, 99\] reaches byte 99"),
    ("{train:[0,8],validation:null,test:[8,99]}", r"test=\[8, 99\] reaches byte 99"),  # null leaves it out
    ("{train:[true,8],test:[8,16]}", r"train=\[True, 8\] must be \[start, end\]"),
    ("{train:[0,2],validation:[3,4],test:[8,16]}", r"validation=\[3, 4\] holds no whole UTF-8 character")])
def test_byte_splits_errors_name_the_bad_value(make_cfg, tmp_path, splits, message):
    write_jsonl(tmp_path / "d", "train", [{"id": "doc", "text": "ab€cdé𝄞xyz"}])
    with pytest.raises(ConfigError, match=message):
        load_task_data(make_cfg("task=enwik8", f"task.data_dir={tmp_path / 'd'}", f"task.byte_splits={splits}").task)


MEETINGS = [{"id": f"m{d}-q{q}", "article": f"transcript of meeting {d}: " + "words " * 30, "query": f"question {q}?",
             "abstract": f"answer {q} about meeting {d}"} for d in range(12) for q in range(4)]


def test_carving_keeps_every_query_on_a_document_on_one_side(make_cfg, tmp_path):
    """QMSum-like rows (four queries per meeting): a carved split takes whole meetings, so no evaluation query
    reads a transcript that training read (carving by query and transcript together once put 10 of 10 there)."""
    write_jsonl(tmp_path / "d", "train", MEETINGS)
    data = load_task_data(make_cfg("task=qmsum", f"task.data_dir={tmp_path / 'd'}", "task.eval_split=validation",
                                   "task.carve_fraction=0.25").task)
    meeting = lambda row: row["id"].split("-")[0]  # noqa: E731
    assert {meeting(r) for r in data.train}.isdisjoint({meeting(r) for r in data.eval})
    assert len(data.eval) % 4 == 0 and len(data.train) + len(data.eval) == 48 and data.eval
    assert (data.eval_overlap, data.eval_shared_documents) == (0, 0)


def test_evaluation_queries_on_a_training_document_are_counted(make_cfg, tmp_path):
    """Separate files may share documents under other queries: not the same example (allowed), but counted and
    said, for the record and its caveats."""
    write_jsonl(tmp_path / "d", "train", [r for r in MEETINGS if not r["id"].endswith("q3")])
    write_jsonl(tmp_path / "d", "test", [r for r in MEETINGS if r["id"].endswith("q3")][:5]
                + [{**MEETINGS[0], "id": "new", "article": "another meeting entirely"}])
    data = load_task_data(make_cfg("task=qmsum", f"task.data_dir={tmp_path / 'd'}").task)
    assert (data.eval_overlap, data.eval_shared_documents) == (0, 5)
    assert any("5 of 6 evaluation examples read a document that training examples read too" in n for n in data.notes)
