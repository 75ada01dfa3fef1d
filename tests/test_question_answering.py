"""Extractive question answering: rows checked against their context, windows over long contexts, spans
mapped back to text, global attention on the question, end-to-end runs."""

import json

import pytest
from datasets import Dataset
from omegaconf import OmegaConf

from lsgbench.cli import summary, truncation_line
from lsgbench.data import load_task_data, tokenize
from lsgbench.errors import ConfigError
from lsgbench.kinds import KINDS
from lsgbench.pipeline import run
from lsgbench.tokenizer import train_tokenizer

from helpers import shared_data

QA = KINDS["question_answering"]
FILLER = " ".join(f"sentence {i} tells of nothing much ." for i in range(40))
TINY = ["model.init=random", "model.size=tiny", "trainer.args.max_steps=2", "task.min_eval_examples=0"]


def qa_row(i, answer="the blue harbor", split="train"):
    context = f"{split} story {i} . {FILLER} the key is kept at {answer} by the keeper ."
    return {"id": f"{split}{i}", "question": f"where is key {i} kept ?", "context": context,
            "answers": {"text": [answer], "answer_start": [context.index(answer)]}}


def write(folder, rows_of_split):
    folder.mkdir(exist_ok=True)
    for split, rows in rows_of_split.items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


TASK = OmegaConf.create({"kind": "question_answering", "doc_stride": 8, "n_best": 20, "max_answer_length": 30,
                         "unanswerable": False})


@pytest.mark.parametrize("answers, message", [
    ({"text": ["blue harbor"], "answer_start": [3]}, "has answer 'blue harbor' at answer_start=3, where the "
                                                     "context reads 'in story 0 '"),
    ({"text": ["blue harbor"], "answer_start": [10_000]}, "answer_start=10000 for 'blue harbor', outside its"),
    ({"text": [""], "answer_start": [0]}, "has an empty answer text ''"),
    ({"text": ["a", "b"], "answer_start": [0]}, "with one start per text"),
    ({"text": [], "answer_start": []}, "has no answer; a task whose questions may have none sets "
                                       "task.unanswerable=true"),
])
def test_answers_are_checked_against_their_context(answers, message):
    row = {**qa_row(0), "answers": answers}
    with pytest.raises(ConfigError) as err:
        QA.target(answers, TASK, "train.jsonl", row["id"], row)
    assert "train.jsonl: example 'train0' " in str(err.value) and message in str(err.value)
    if not answers["text"]:  # where questions may have no answer, an empty list is one
        assert QA.target(answers, OmegaConf.merge(TASK, {"unanswerable": True}), "w", "x", row)["text"] == []


@pytest.fixture
def tokenizer(tmp_path):
    return train_tokenizer([qa_row(i)["context"] + " " + qa_row(i)["question"] for i in range(4)], 400, tmp_path)


def test_windows_share_the_stride_and_the_windows_holding_the_answer_point_at_it(tokenizer):
    rows = [qa_row(0)]
    features = QA.encode(rows, tokenizer, TASK, 48)
    windows = len(features["input_ids"])
    assert windows > 5 and set(features["example_index"]) == {0}
    context = rows[0]["context"]
    spans = [(f, s, e) for f, (s, e) in enumerate(zip(features["start_positions"], features["end_positions"])) if e]
    assert spans and all(features["answer_in_window"][f] for f, _, _ in spans)
    for f, s, e in spans:  # the span's offsets give back the answer text
        offsets = features["offset_mapping"][f]
        assert context[offsets[s][0]:offsets[e][1]].strip() == "the blue harbor"
    for f in range(windows):
        assert len(features["input_ids"][f]) <= 48
        assert features["input_ids"][f][:features["question_length"][f]] == features["input_ids"][0][
            :features["question_length"][0]]  # every window starts with the whole question
    for f in range(windows - 1):  # neighbours share 8 context tokens
        here = [o for o in features["offset_mapping"][f] if o != [-1, -1]]
        there = [o for o in features["offset_mapping"][f + 1] if o != [-1, -1]]
        assert here[-8:] == there[:8]
    one = QA.encode(rows, tokenizer, OmegaConf.merge(TASK, {"doc_stride": None}), 48)
    assert len(one["input_ids"]) == 1 and one["end_positions"] == [0] and one["input_length"][0] > 48  # cut


def test_questions_no_span_can_answer_are_counted(tokenizer):
    """Gold answers longer than task.max_answer_length, or outside every window, cap exact match: counted per
    question. "the blue harbor" is 3 tokens and "story 2" 2, so with max_answer_length=2 only row 2, whose second
    gold answer is "story 2", can be answered right; read in one window, its first answer is cut off too."""
    rows = [qa_row(0), qa_row(1), qa_row(2)]
    rows[2]["answers"] = {"text": ["the blue harbor", "story 2"],
                          "answer_start": [rows[2]["answers"]["answer_start"][0], rows[2]["context"].index("story 2")]}
    task = OmegaConf.merge(TASK, {"max_answer_length": 2})
    windows = QA.truncation(Dataset.from_dict(QA.encode(rows, tokenizer, task, 48)), 48, task)
    assert (windows["answers_cut"], windows["answers_unreachable"]) == (0, 2)
    assert windows["windows_per_context_mean"] == windows["windows_per_context_max"] > 5
    one_window = OmegaConf.merge(task, {"doc_stride": None})
    first = QA.truncation(Dataset.from_dict(QA.encode(rows, tokenizer, one_window, 48)), 48, one_window)
    assert (first["answers_cut"], first["answers_unreachable"], first["windows_per_context_max"]) == (3, 2, 1)
    line = truncation_line({"eval": first})
    assert "eval: 2 of 3 questions no span can answer right (every gold answer outside the windows or longer than " \
           "task.max_answer_length)" in line


def test_the_best_span_over_all_windows_is_the_prediction(tokenizer):
    rows = [qa_row(0), qa_row(1, answer="the old mill")]
    features = QA.encode(rows, tokenizer, TASK, 48)
    ds = Dataset.from_dict(features)
    outputs = []
    for f in range(len(ds)):  # logits that favour each window's gold span, more strongly in later windows
        n = len(ds[f]["input_ids"])
        starts, ends = [0.0] * n, [0.0] * n
        if features["end_positions"][f]:
            starts[features["start_positions"][f]] = ends[features["end_positions"][f]] = 5.0 + f
        outputs.append((starts, ends))
    assert QA.predictions(outputs, ds, rows, TASK) == ["the blue harbor", "the old mill"]
    short = OmegaConf.merge(TASK, {"max_answer_length": 2})  # "the blue harbor" is longer than 2 tokens
    assert QA.predictions(outputs, ds, rows, short)[0] != "the blue harbor"
    never = [([-9.0] * len(s), [-9.0] * len(e)) for s, e in outputs]  # no span beats the first token's score
    for s, e in never:
        s[0] = e[0] = 9.0
    assert QA.predictions(never, ds, rows, OmegaConf.merge(TASK, {"unanswerable": True})) == ["", ""]
    scores = QA.metrics(["the blue harbor", "mill"], [r["answers"] for r in rows], 0, TASK)
    assert scores == {"exact_match": 50.0, "f1": pytest.approx(50 + 50 * 2 * 1 * 0.5 / 1.5)}


def test_longformer_attends_globally_to_the_question(tokenizer):
    features = QA.encode([qa_row(0)], tokenizer, TASK, 48)
    rows = [{k: v[f] for k, v in features.items()} for f in range(2)]
    batch = QA.collate(rows, tokenizer, pad_to=None, global_attention=True, task=TASK)
    q = features["question_length"][0]
    assert batch["global_attention_mask"][0].tolist() == [1] * q + [0] * (48 - q)
    assert batch["start_positions"].tolist() == features["start_positions"][:2]


def test_a_question_answering_folder_runs_end_to_end_with_windows_and_with_lsg(make_cfg, tmp_path):
    folder = write(tmp_path / "qa", {"train": [qa_row(i) for i in range(12)],
                                     "test": [qa_row(i, split="test") for i in range(4)]})
    common = ["task=question_answering", "task.name=mine", f"task.data_dir={folder}", *TINY]
    too_wide = run(make_cfg(*common, "model=roberta", "model.max_length=64"), tmp_path / "w", [])
    assert too_wide["status"] == "invalid" and "task.doc_stride=128 is not below the 54 context tokens a window " \
                                                "of example 'train0' holds (input length 64)" in too_wide["error"]
    common.append("task.doc_stride=16")
    windows = run(make_cfg(*common, "model=roberta", "model.max_length=64"), tmp_path / "a", [])
    assert windows["status"] == "ok", windows["error"]
    read = windows["provenance"]["truncation"]["eval"]
    assert set(windows["metrics"]) == {"exact_match", "f1"} and {k: read[k] for k in (
        "examples", "inputs_cut", "inputs_dropped_share", "answers_cut", "answers_unreachable")} == {
        "examples": 4, "inputs_cut": 0, "inputs_dropped_share": 0.0, "answers_cut": 0, "answers_unreachable": 0}
    windows_line = next(line for line in summary(windows).splitlines() if line.startswith("  windows:    train: "))
    assert read["windows_per_context_max"] > 1 and "; eval: " in windows_line and "per context on average" in \
        windows_line  # windows read it all
    predictions = json.loads((tmp_path / "a" / "predictions.json").read_text())
    assert predictions["targets"][0] == ["the blue harbor"] and len(predictions["predictions"]) == 4
    lsg = run(make_cfg(*common, "model=lsg_roberta", "model.max_length=512", "model.attention.block_size=32",
                       "model.attention.sparse_block_size=16"), tmp_path / "b", [])
    assert lsg["status"] == "ok", lsg["error"]
    assert lsg["provenance"]["truncation"]["eval"]["inputs_cut"] == 0  # one window holds each context
    cut = run(make_cfg(*common, "model=roberta", "model.max_length=64", "task.doc_stride=null"), tmp_path / "c", [])
    assert cut["provenance"]["truncation"]["eval"]["answers_cut"] == 4  # the answers sit past the first window
    assert "eval: 4 of 4 answers cut off" in summary(cut)


def test_longformer_and_a_model_without_a_qa_head(make_cfg, tmp_path):
    folder = write(tmp_path / "qa", {"train": [qa_row(i) for i in range(8)],
                                     "test": [qa_row(i, split="test") for i in range(2)]})
    common = ["task=question_answering", f"task.data_dir={folder}", *TINY]
    longformer = run(make_cfg(*common, "model=longformer", "model.max_length=256",
                              "model.attention.attention_window=32"), tmp_path / "a", [])
    assert longformer["status"] == "ok", longformer["error"]
    refused = run(make_cfg(*common, "model=pegasus_x"), tmp_path / "b", [])
    assert refused["status"] == "invalid" and "model 'pegasus_x' has no question_answering head (it supports " \
                                              "['classification', 'summarization'])" in refused["error"]


def test_the_hotpotqa_sample_loads_and_every_answer_is_found_in_a_window(make_cfg, tmp_path):
    task = make_cfg("task=question_answering", f"task.data_dir={shared_data('hotpotqa')}").task
    data = load_task_data(task)
    assert (len(data.train), len(data.eval)) == (62, 30)
    tokenizer = train_tokenizer([r["context"] for r in data.train], 2000, tmp_path)
    ds = tokenize(data.eval, tokenizer, task, 512, tmp_path)
    assert KINDS["question_answering"].truncation(ds, 512, task)["answers_cut"] == 0
    assert len(ds) > len(data.eval)  # ~900-word contexts: several 512-token windows each
