"""Masked language modelling: pieces of the joined documents, BERT's corruption, the metrics by hand, the loss on
scored positions against the model's own logits, and a pretraining run whose model a later run loads."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from lsgbench.kinds import KINDS
from lsgbench.kinds.masked_lm import corrupt, mlm_metrics
from lsgbench.models import build_model
from lsgbench.cli import summary
from lsgbench.pipeline import run
from lsgbench.tokenizer import train_tokenizer
from lsgbench.train import Collator

from helpers import write_corpus

MLM = KINDS["masked_lm"]
TASK = OmegaConf.create({"kind": "masked_lm", "mlm_probability": 0.15})
DOCS = [{"id": f"d{i}", "text": " ".join(f"word{(i * 7 + j) % 50} is here ." for j in range(60 + 13 * i))}
        for i in range(4)]
TINY = ["model.init=random", "model.size=tiny", "trainer.args.per_device_train_batch_size=4",
        "trainer.args.per_device_eval_batch_size=4"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_tokenizer([d["text"] for d in DOCS], 400, tmp_path_factory.mktemp("tok"))


def stream_view(features):
    """(the stream's tokens, and {stream position: (corrupted id, label)} of the scored ones) from the pieces."""
    tokens, scored = [], {}
    for ids, bad, labels in zip(features["input_ids"], features["eval_input_ids"], features["eval_labels"]):
        for t, b, y in zip(ids[1:-1], bad[1:-1], labels[1:-1]):
            if y != -100:
                scored[len(tokens)] = (b, y)
            tokens.append(t)
    return tokens, scored


def test_pieces_hold_every_document_once_and_the_evaluation_scores_the_same_tokens_at_every_length(tokenizer):
    short, long = (MLM.encode(DOCS, tokenizer, TASK, n) for n in (64, 256))
    sep, cls = tokenizer.sep_token_id, tokenizer.cls_token_id
    for features, n in ((short, 64), (long, 256)):
        assert all(ids[0] == cls and ids[-1] == sep and len(ids) <= n for ids in features["input_ids"])
        assert all(len(ids) == n for ids in features["input_ids"][:-1])  # only the last piece is shorter
    docs = tokenizer([d["text"] for d in DOCS], add_special_tokens=False)["input_ids"]
    expected = [t for doc in docs for t in (*doc, sep)]
    tokens_short, scored_short = stream_view(short)
    tokens_long, scored_long = stream_view(long)
    assert tokens_short == tokens_long == expected  # joined with separators, nothing cut, nothing repeated
    assert scored_short == scored_long  # the same tokens under the same corruption, whatever the piece length
    assert 0.10 < len(scored_short) / len(expected) < 0.20
    assert all(expected[i] == y and expected[i] != sep for i, (_, y) in scored_short.items())
    # every character of a document is owned by one of its tokens
    chars = sum(c for piece in short["chars"] for c in piece)
    assert chars == sum(len(d["text"]) for d in DOCS)


def test_corruption_follows_bert_and_never_touches_special_tokens(tokenizer):
    ids = torch.randint(5, len(tokenizer), (64, 512))
    ids[:, 0], ids[:, -1], ids[:8, -100:] = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    inputs, labels = corrupt(ids, tokenizer, 0.15, torch.Generator().manual_seed(0))
    chosen = labels != -100
    assert torch.equal(labels[chosen], ids[chosen]) and not chosen[:, 0].any() and not chosen[:8, -100:].any()
    assert chosen.float().mean().item() == pytest.approx(0.15 * (1 - 800 / 32768 - 2 / 512), abs=0.005)
    masked = (inputs == tokenizer.mask_token_id) & chosen
    kept = (inputs == ids) & chosen
    assert masked.sum() / chosen.sum() == pytest.approx(0.8, abs=0.02)
    assert kept.sum() / chosen.sum() == pytest.approx(0.1 + 0.1 / len(tokenizer), abs=0.02)  # a random id may be the same
    assert torch.equal(inputs[~chosen], ids[~chosen])
    again, _ = corrupt(ids, tokenizer, 0.15, torch.Generator().manual_seed(0))
    assert torch.equal(inputs, again)  # seeded


def test_metrics_by_hand():
    m = mlm_metrics(nll_nats=6.0, tokens=3, chars=12)
    assert m["mlm_loss"] == pytest.approx(2.0) and m["perplexity"] == pytest.approx(math.exp(2.0))
    assert m["bits_per_token"] == pytest.approx(2.0 / math.log(2))
    assert m["bits_per_character"] == pytest.approx(6.0 / math.log(2) / 12)


@pytest.mark.parametrize("model, attention", [("roberta", "full"), ("bert", "full"), ("roberta", "lsg"),
                                              ("longformer", "longformer"), ("bigbird", "bigbird")])
def test_the_scored_loss_equals_the_models_own_logits(make_cfg, tokenizer, model, attention):
    cfg = make_cfg("task=masked_lm", f"model={model}", f"attention={attention}", "model.init=random",
                   "model.size=tiny", "model.max_length=128", "model.tokenizer_vocab_size=400",
                   *(["model.attention.block_size=16", "model.attention.sparse_block_size=16"] if attention == "lsg"
                     else ["model.attention.attention_window=16"] if attention == "longformer"
                     else ["model.attention.block_size=8", "model.attention.num_random_blocks=1"]
                     if attention == "bigbird" else []))
    built = build_model(cfg.model, cfg.task, [d["text"] for d in DOCS], cfg.paths.cache_dir)
    features = MLM.encode(DOCS, built.tokenizer, cfg.task, 128)
    batch = Collator(built, cfg.task)([{k: v[i] for k, v in features.items()} for i in range(2)])
    model = built.model.eval()
    with torch.no_grad():
        got = MLM.predict(model, dict(batch), built.tokenizer)[0]
        logits = model(**{k: v for k, v in batch.items() if k not in ("labels", "chars")}).logits
    for row, (nll, n, chars) in enumerate(got):
        scored = batch["labels"][row] != -100
        want = F.cross_entropy(logits[row][scored].double(), batch["labels"][row][scored], reduction="sum")
        assert n == int(scored.sum()) > 0 and nll == pytest.approx(want.item(), rel=1e-5)
        assert chars == int(batch["chars"][row][scored].sum())


def read(out):
    return json.loads((out / "run_record.json").read_text())


def test_a_pretraining_run_keeps_its_model_and_a_classifier_loads_it(make_cfg, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", DOCS[:3], DOCS[3:])
    overrides = [*TINY, "task=masked_lm", f"task.data_dir={corpus}", "model=roberta", "attention=lsg",
                 "model.max_length=256", "model.attention.block_size=32", "model.attention.sparse_block_size=32",
                 "trainer.args.max_steps=3", "model.tokenizer_vocab_size=400"]
    pre = run(make_cfg(*overrides), tmp_path / "pre", overrides)
    assert pre["status"] == "ok", pre["error"]
    m = pre["metrics"]
    assert m["perplexity"] == pytest.approx(math.exp(m["mlm_loss"]))
    assert m["bits_per_token"] == pytest.approx(m["mlm_loss"] / math.log(2))
    pieces = json.loads((tmp_path / "pre" / "predictions.json").read_text())["pieces"]
    assert m["mlm_loss"] == pytest.approx(sum(p["loss_nats"] for p in pieces) / sum(p["scored_tokens"] for p in pieces))
    artifact = pre["artifact"]
    assert (tmp_path / "pre" / "model" / "model.safetensors").is_file() and len(artifact["fingerprint"]) == 16
    saved = load_file(tmp_path / "pre" / "model" / "model.safetensors")

    fine = [*TINY, "task=synth_keys", "task.synthetic.doc_words=120", "task.synthetic.n_train=8",
            "task.synthetic.n_test=4", "model=roberta", f"model.pretrained=run:{pre['run_id']}", "model.init=pretrained",
            "model.max_length=256", "trainer.trainable=none"]
    cfg = make_cfg(*fine)
    r = run(cfg, tmp_path / "fine", fine)
    assert r["status"] == "ok", r["error"]
    assert r["provenance"]["pretrained_run"] == pre["run_id"]
    assert r["provenance"]["pretrained_fingerprint"] == artifact["fingerprint"]
    assert r["attention"]["type"] == "lsg" and r["attention"]["from_checkpoint"]  # its own knobs, not attention=full
    assert r["config"]["model"]["pretrained"] == f"run:{pre['run_id']}"
    assert "train_steps" not in r["efficiency"] and r["provenance"]["trainable"]["parameters"] == 0
    assert ", trains none' max_length=256" in summary(r)
    # the same weights: build the classifier the run built and compare its encoder with the saved one
    cfg.model.pretrained = artifact["path"]
    built = build_model(cfg.model, cfg.task, [], cfg.paths.cache_dir)
    state = built.model.state_dict()
    shared = [k for k in saved if k.startswith("roberta.")]
    assert len(shared) > 20 and all(torch.equal(state[k], saved[k]) for k in shared)

    # pretrained again in place: run:<id> refuses the new weights, and a run naming the path is not reused
    assert run(make_cfg(*fine), tmp_path / "again", fine).get("reused")
    by_path = [*fine[:-4], f"model.pretrained={artifact['path']}", *fine[-3:]]
    first = run(make_cfg(*by_path), tmp_path / "by_path", by_path)
    assert first["status"] == "ok" and not first.get("reused")
    save_file({k: v + 1 if k == shared[0] else v for k, v in saved.items()},
              tmp_path / "pre" / "model" / "model.safetensors", metadata={"format": "pt"})
    refused = run(make_cfg(*fine), tmp_path / "refused", fine)
    assert refused["status"] == "invalid" and "are not the ones run" in refused["error"]
    second = run(make_cfg(*by_path), tmp_path / "by_path2", by_path)
    assert second["status"] == "ok" and not second.get("reused")
    assert second["provenance"]["pretrained_fingerprint"] != first["provenance"]["pretrained_fingerprint"]
