"""Paired inputs: a classification document with a second text (ContractNLI's hypothesis) and a summarization
article with a query (QMSum's), the short text first and never cut."""

import json

import pytest

from lsgbench.data import load_task_data, tokenize
from lsgbench.errors import ConfigError
from lsgbench.pipeline import run
from lsgbench.tokenizer import train_tokenizer

CONTRACT = " ".join(f"clause {i} says the party shall keep the information confidential ." for i in range(60))
HYPOTHESES = ["the receiving party may share the information with its employees", "the agreement lasts forever"]
TINY = ["model.init=random", "model.size=tiny", "trainer.args.max_steps=1", "task.min_eval_examples=0"]


def write(folder, split, rows):
    folder.mkdir(exist_ok=True)
    (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def nli_rows(prefix, n):
    """Each contract twice, once per hypothesis: the same document with another hypothesis is another example."""
    return [{"id": f"{prefix}{i}-{h}", "text": f"{prefix} contract {i} . {CONTRACT}", "hypothesis": HYPOTHESES[h],
             "label": ["entailment", "contradiction"][h]} for i in range(n) for h in (0, 1)]


@pytest.fixture
def nli(tmp_path):
    write(tmp_path / "nli", "train", nli_rows("train", 4))
    write(tmp_path / "nli", "test", nli_rows("test", 2))
    return ["task=classification", "task.name=nli", f"task.data_dir={tmp_path / 'nli'}",
            "task.text_pair_column=hypothesis", "task.label_names=[entailment,contradiction]"]


def test_the_hypothesis_comes_first_and_only_the_document_is_cut(make_cfg, nli, tmp_path):
    task = make_cfg(*nli).task
    data = load_task_data(task)
    assert data.eval_overlap == 0 and len(data.train) == 8  # one contract, two hypotheses: two examples
    tokenizer = train_tokenizer([r["text"] + " " + r["hypothesis"] for r in data.train], 500, tmp_path)
    ds = tokenize(data.eval, tokenizer, task, 48, tmp_path)
    for row, ids, length in zip(data.eval, ds["input_ids"], ds["input_length"]):
        hypothesis = tokenizer(row["hypothesis"], add_special_tokens=False)["input_ids"]
        assert ids[:len(hypothesis) + 1] == [tokenizer.bos_token_id, *hypothesis]  # <s> hypothesis </s></s> document
        assert len(ids) == 48 < length  # the document was cut to fit, the hypothesis kept whole
        assert ids[-1] == tokenizer.eos_token_id


def test_a_pair_classification_task_runs_end_to_end(make_cfg, nli, tmp_path):
    overrides = [*nli, "model=roberta", "model.max_length=64", *TINY]
    record = run(make_cfg(*overrides), tmp_path / "out", overrides)
    assert record["status"] == "ok", record["error"]
    cut = record["provenance"]["truncation"]["eval"]
    assert cut["inputs_cut"] == 4 and record["metrics"]["accuracy"] in (0.0, 25.0, 50.0, 75.0, 100.0)


def test_a_missing_or_too_long_hypothesis_is_named(make_cfg, nli, tmp_path):
    rows = nli_rows("train", 2)
    del rows[1]["hypothesis"]
    write(tmp_path / "nli", "train", rows)
    with pytest.raises(ConfigError, match="example 'train0-1' has no 'hypothesis' column; the classification "
                                          "schema is \\{'id', 'text', 'hypothesis', 'label'\\}"):
        load_task_data(make_cfg(*nli).task)
    rows[1]["hypothesis"] = " "
    write(tmp_path / "nli", "train", rows)
    with pytest.raises(ConfigError, match="1 example\\(s\\) have an empty 'hypothesis'"):
        load_task_data(make_cfg(*nli).task)
    long = nli_rows("train", 2)
    long[0]["hypothesis"] = "a very long hypothesis " * 20
    write(tmp_path / "nli", "train", long)
    task = make_cfg(*nli).task
    tokenizer = train_tokenizer([CONTRACT], 500, tmp_path)
    with pytest.raises(ConfigError, match="example 'train0-0': its 'hypothesis' takes .* tokens, which leaves no "
                                          "room for the document within the input length 32"):
        tokenize(load_task_data(task).train, tokenizer, task, 32, tmp_path)


def test_a_summarization_query_comes_first_and_runs_end_to_end(make_cfg, tmp_path):
    rows = {split: [{"id": f"{split}{i}", "article": f"{split} meeting {i} . " + CONTRACT, "query": "what was decided",
                     "abstract": f"the party keeps clause {i} confidential ."} for i in range(n)]
            for split, n in (("train", 6), ("test", 2))}
    for split, split_rows in rows.items():
        write(tmp_path / "qm", split, split_rows)
    overrides = ["task=summarization", "task.name=qm", f"task.data_dir={tmp_path / 'qm'}", "task.query_column=query",
                 "task.generation.max_new_tokens=4", "model=bart", "model.max_length=40", *TINY]
    record = run(make_cfg(*overrides), tmp_path / "out", overrides)
    assert record["status"] == "ok", record["error"]
    assert record["provenance"]["truncation"]["eval"]["inputs_cut"] == 2
    task = make_cfg(*overrides).task
    tokenizer = train_tokenizer([r["article"] for r in rows["train"]], 500, tmp_path)
    ids = tokenize(load_task_data(task).eval, tokenizer, task, 40, tmp_path)["input_ids"][0]
    query = tokenizer("what was decided", add_special_tokens=False)["input_ids"]
    assert ids[:len(query) + 1] == [tokenizer.bos_token_id, *query] and len(ids) == 40
