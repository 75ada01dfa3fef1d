"""Multiple choice: rows checked, options read with the question first, placeholders for missing options
masked out of scores and loss, end-to-end runs."""

import json

import pytest
import torch
from omegaconf import OmegaConf

from lsgbench.data import load_task_data
from lsgbench.errors import ConfigError
from lsgbench.kinds import KINDS
from lsgbench.models import build_model
from lsgbench.pipeline import run
from lsgbench.tokenizer import train_tokenizer

from helpers import shared_data

MC = KINDS["multiple_choice"]
STORY = " ".join(f"in part {i} the traveller walks on ." for i in range(30))
COLOURS = ["red", "green", "blue", "amber", "violet"]
TINY = ["model.init=random", "model.size=tiny", "trainer.args.max_steps=2", "task.min_eval_examples=0"]


def mc_row(i, n_options, split="train"):
    """The story ends with the door's colour; the options are colours, from 2 to 5 of them."""
    answer = i % n_options
    return {"id": f"{split}{i}", "context": f"{split} tale {i} . {STORY} the door was {COLOURS[answer]} .",
            "question": "what colour was the door ?", "options": COLOURS[:n_options], "label": answer}


@pytest.mark.parametrize("change, message", [
    ({"label": 4}, "has label 4, which is not an index into its 3 options (0 to 2)"),
    ({"label": "red"}, "has label 'red', which is not an index"),
    ({"options": ["only one"]}, "has options ['only one']; they must be a list of at least two non-empty texts"),
    ({"options": ["a", " "]}, "has options ['a', ' ']; they must be a list of at least two non-empty texts"),
])
def test_labels_and_options_are_checked(change, message):
    row = {**mc_row(0, 3), **change}
    with pytest.raises(ConfigError) as err:
        MC.target(row["label"], None, "train.jsonl", row["id"], row)
    assert f"train.jsonl: example 'train0' {message}" in str(err.value)


@pytest.fixture
def tokenizer(tmp_path):
    return train_tokenizer([mc_row(i, 5)["context"] + " what colour red green blue" for i in range(3)], 400, tmp_path)


def test_options_come_first_and_placeholders_fill_a_batch(tokenizer):
    rows = [mc_row(0, 2), mc_row(1, 4)]
    features = MC.encode(rows, tokenizer, OmegaConf.create({}), 32)
    assert [len(options) for options in features["input_ids"]] == [2, 4] and features["labels"] == [0, 1]
    first = tokenizer("what colour was the door ? green")["input_ids"]  # <s> question option </s>
    assert features["input_ids"][1][1][:len(first)] == first and features["first_length"][1][1] == len(first)
    batch = MC.collate([{k: v[i] for k, v in features.items()} for i in range(2)], tokenizer, None, True, None)
    assert batch["input_ids"].shape == (2, 4, 32) and batch["option_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert batch["attention_mask"][0, 2].sum() == 1  # a placeholder: the first token alone
    assert batch["global_attention_mask"][1, 1].tolist() == [1] * len(first) + [0] * (32 - len(first))


def test_placeholder_options_are_never_chosen_and_cost_no_loss(make_cfg, tmp_path, tokenizer):
    task = make_cfg("task=multiple_choice", "task.data_dir=unused").task
    built = build_model(make_cfg("model=roberta", "model.init=random", "model.size=tiny").model, task,
                        [mc_row(0, 5)["context"]], tmp_path)
    rows = [mc_row(0, 2), mc_row(1, 5)]
    features = MC.encode(rows, built.tokenizer, task, 48)
    batch = MC.collate([{k: v[i] for k, v in features.items()} for i in range(2)], built.tokenizer, None, False, None)
    model = built.model.eval()
    with torch.no_grad():
        out = model(**batch)
        alone = model(**MC.collate([{k: v[0] for k, v in features.items()}], built.tokenizer, None, False, None))
    assert (out.logits[0, 2:] == torch.finfo(out.logits.dtype).min).all() and out.logits.argmax(-1)[0] < 2
    torch.testing.assert_close(out.logits[0, :2], alone.logits[0])  # padding the batch changes no score
    # the loss: the mean of -log p(gold) over the real options of each row (labels 0 of 2 and 1 of 5)
    expected = -(out.logits[0, :2].log_softmax(-1)[0] + out.logits[1].log_softmax(-1)[1]) / 2
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_a_multiple_choice_folder_with_2_to_5_options_runs_end_to_end(make_cfg, tmp_path):
    folder = tmp_path / "mc"
    folder.mkdir()
    for split, n in (("train", 12), ("test", 5)):
        rows = [mc_row(i, 2 + i % 4, split) for i in range(n)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["task=multiple_choice", "task.name=mine", f"task.data_dir={folder}", *TINY,
              "trainer.args.per_device_train_batch_size=4", "trainer.args.per_device_eval_batch_size=4"]
    for model in (["model=roberta", "model.max_length=128"],
                  ["model=lsg_roberta", "model.max_length=512", "model.attention.block_size=32",
                   "model.attention.sparse_block_size=16"],
                  ["model=longformer", "model.max_length=256", "model.attention.attention_window=32"]):
        record = run(make_cfg(*common, *model), tmp_path / model[0], [])
        assert record["status"] == "ok", record["error"]
        assert list(record["metrics"]) == ["accuracy"] and record["metrics"]["accuracy"] in [0, 20, 40, 60, 80, 100]
        predictions = json.loads((tmp_path / model[0] / "predictions.json").read_text())
        assert all(0 <= p < 2 + i % 4 for i, p in enumerate(predictions["predictions"]))  # never a placeholder
    refused = run(make_cfg(*common, "model=bart"), tmp_path / "bart", [])
    assert refused["status"] == "invalid" and "model 'bart' has no multiple_choice head" in refused["error"]


def test_the_quality_sample_loads(make_cfg):
    data = load_task_data(make_cfg("task=multiple_choice", f"task.data_dir={shared_data('quality')}").task)
    assert (len(data.train), len(data.eval)) == (40, 22) and data.eval_overlap == 0  # questions share stories
    assert {len(r["options"]) for r in data.train} == {4}
