"""Task kinds: each holds what differs between classifying and generating."""

import json

import pytest
from omegaconf import OmegaConf

from lsgbench.errors import ConfigError
from lsgbench.kinds import KINDS, task_kind

TASK = OmegaConf.create({"kind": "classification", "label_names": ["neg", "pos"], "max_target_length": 8,
                         "rouge_lsum_split": "punkt"})


def test_classification_targets_are_label_indices_and_read_back_as_names(tmp_path):
    kind = KINDS["classification"]
    assert [kind.target(v, TASK, "here", "x") for v in ("pos", 0, 1)] == [1, 0, 1]
    with pytest.raises(ConfigError, match=r"here: example 'x' has label 'great'.*\['neg', 'pos'\]"):
        kind.target("great", TASK, "here", "x")
    assert [kind.target(v, TASK, "here", "x") for v in (True, False)] == [1, 0]  # Hyperpartisan's labels are bools
    with pytest.raises(ConfigError, match="label 2"):
        kind.target(2, TASK, "here", "x")
    assert kind.pad_targets([1, 0]).tolist() == [1, 0]
    kind.write_predictions(tmp_path / "p.json", ["a", "b"], [1, 1], [1, 0], TASK)
    assert json.loads((tmp_path / "p.json").read_text()) == {"ids": ["a", "b"], "predictions": ["pos", "pos"],
                                                             "targets": ["pos", "neg"]}


def test_summarization_targets_are_text_padded_with_no_loss_positions():
    kind = KINDS["summarization"]
    assert kind.target("a summary .", TASK, "here", "x") == "a summary ."
    for bad in (["a", "list"], None, "  "):
        with pytest.raises(ConfigError, match=r"example 'x' has an empty or non-text 'abstract'"):
            kind.target(bad, TASK, "here", "x")
    assert kind.pad_targets([[5, 6, 2], [7, 2]]).tolist() == [[5, 6, 2], [7, 2, -100]]
    rows = [{"article": "long text", "abstract": "short"}]
    assert kind.tokenizer_texts(rows, TASK) == ["long text", "short"]
    assert KINDS["classification"].tokenizer_texts([{"text": "t", "label": 0}], TASK) == ["t"]


def test_summarization_metrics_are_rouge_and_generated_length():
    metrics = KINDS["summarization"].metrics(["the cat sat", "a dog"], ["the cat sat", "a dog ran"], 7, TASK)
    assert metrics["rouge1"] == pytest.approx(100 * (1 + 0.8) / 2) and metrics["gen_len"] == 3.5


def test_an_unknown_kind_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"task.kind='qa' is unknown; choose one of \['causal_lm', 'classification', 'masked_lm', "
                                          r"'multiple_choice', 'question_answering', 'summarization'\]"):
        task_kind(OmegaConf.create({"kind": "qa"}))


def test_task_settings_a_kind_cannot_use_are_named():
    task = OmegaConf.create({"rouge_lsum_split": "nltk", "max_target_length": 64, "generation": {"num_beams": 2}})
    assert KINDS["summarization"].check(task) == ["task.rouge_lsum_split='nltk' is unknown; choose one of "
                                                  "['punkt', 'lines']"]
    assert KINDS["classification"].check(OmegaConf.create({"label_names": "???"})) == [
        "task.label_names: give the class names in label-index order, e.g. task.label_names=[neg,pos]"]


def test_only_a_trained_classifier_of_another_size_is_called_replaced(caplog):
    """A masked-LM checkpoint has no classifier (its config's default two labels are no head): fine-tuning it with
    three labels says nothing of a 2-label head; a sequence classifier with two labels is replaced, and said so."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from lsgbench.kinds import KINDS

    task = OmegaConf.create({"label_names": ["a", "b", "c"]})
    for architecture, replaced in (("RobertaForMaskedLM", False), ("RobertaForSequenceClassification", True)):
        config = SimpleNamespace(num_labels=2, id2label={0: "LABEL_0", 1: "LABEL_1"}, architectures=[architecture])
        caplog.clear()
        with caplog.at_level("WARNING"):
            load_args = KINDS["classification"].pretrained_config(config, task, "ckpt")
        assert bool(load_args.get("ignore_mismatched_sizes")) == replaced and config.num_labels == 3
        assert any("has a 2-label head" in r.getMessage() for r in caplog.records) == replaced


def test_a_run_that_failed_is_named_as_failed_not_as_one_that_kept_no_model(tmp_path):
    import json

    from lsgbench.errors import ConfigError
    from lsgbench.models import artifacts

    (tmp_path / "r1.json").write_text(json.dumps({"run_id": "r1", "status": "oom", "error": "out of memory"}))
    (tmp_path / "r2.json").write_text(json.dumps({"run_id": "r2", "status": "ok", "error": None}))
    with pytest.raises(ConfigError, match=r"run r1 ended oom and kept no model \(out of memory\); fix that and rerun it"):
        artifacts.resolve("run:r1", tmp_path)
    with pytest.raises(ConfigError, match="run r2 kept no model; rerun it with save_model=true"):
        artifacts.resolve("run:r2", tmp_path)
