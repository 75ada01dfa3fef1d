"""trainer.trainable (only the chosen parameters change), model.eval_max_length (the evaluation runs at that
length, the model converted again from its trained weights) and model.position_init."""

import json
import subprocess
import sys

import pytest
import torch

from lsgbench.errors import ConfigError
from lsgbench.models import at_length, build_model, freeze
from lsgbench.cli import summary
from lsgbench.pipeline import run
from lsgbench.record import read_records

from helpers import TEXTS

TINY = ["model.init=random", "model.size=tiny", "trainer.args.per_device_train_batch_size=4",
        "trainer.args.per_device_eval_batch_size=4"]
VARIANTS = {"lsg": ["model.attention.block_size=32", "model.attention.sparse_block_size=32"],
            "local": ["model.attention.window=64", "model.attention.num_global_tokens=1"],
            "dilated": ["model.attention.window=64", "model.attention.dilation=[1,2]", "model.attention.num_global_tokens=1"],
            "spade": ["model.attention.window=64", "model.attention.num_global_tokens=1"]}


def build(make_cfg, *overrides):
    cfg = make_cfg("task=synth_keys", "model=roberta", *TINY, *overrides)
    return build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir)


def changed_after_training(built, steps=2):
    before = {k: v.clone() for k, v in built.model.state_dict().items()}
    model = built.model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(5, len(built.tokenizer), (2, 700))
    for _ in range(steps):
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1])).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}


@pytest.mark.parametrize("attention", sorted(VARIANTS))
@pytest.mark.parametrize("choice, expected", [
    ("globals", r"global_embeddings"),
    ("positions", r"position_embeddings"),
    ("new", r"global_embeddings|position_embeddings|\.spade\."),  # what conversion to 1,024 tokens added or grew
])
def test_only_the_chosen_parameters_train(make_cfg, attention, choice, expected):
    import re

    built = build(make_cfg, f"attention={attention}", "model.max_length=1024", *VARIANTS[attention])
    report = freeze(built, choice)
    changed = changed_after_training(built)
    assert changed and all(re.search(expected, k) for k in changed), sorted(changed)
    assert report["parameters"] == sum(p.numel() for p in built.model.parameters() if p.requires_grad) > 0
    if choice == "new" and attention == "spade":
        assert any(".spade." in k for k in changed)


def test_a_choice_the_model_lacks_is_refused(make_cfg):
    with pytest.raises(ConfigError, match="trainer.trainable=globals: local sliding w=64 g=0 attention has no global tokens"):
        freeze(build(make_cfg, "attention=local", "model.attention.window=64"), "globals")
    with pytest.raises(ConfigError, match="its conversion added no parameters"):
        freeze(build(make_cfg), "new")  # full attention: nothing converted
    assert freeze(build(make_cfg), "none")["parameters"] == 0


@pytest.mark.parametrize("attention", sorted(VARIANTS))
def test_a_longer_evaluation_extends_the_trained_positions_by_tiling_them(make_cfg, attention):
    built = build(make_cfg, f"attention={attention}", "model.max_length=1024", *VARIANTS[attention])
    table = built.model.roberta.embeddings.position_embeddings
    with torch.no_grad():
        table.weight[2:].normal_()  # stands for trained rows
    trained = table.weight[2:].clone()
    longer = at_length(built, 4096)
    grown = longer.model.roberta.embeddings.position_embeddings.weight
    assert longer.max_length == 4096 and grown.shape[0] >= 4096 + 2
    assert all(torch.equal(grown[2 + i * 1024: 2 + (i + 1) * 1024], trained[:1024]) for i in range(4))
    ids = torch.randint(5, 100, (1, 4096))
    assert longer.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.shape == (1, 2)


def test_an_encoder_decoder_converted_model_takes_a_longer_evaluation_too(make_cfg):
    cfg = make_cfg("task=synth_extract", "model=lsg_bart", *TINY, "model.max_length=1024",
                   "model.attention.block_size=32", "model.attention.sparse_block_size=32")
    built = build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir)
    longer = at_length(built, 2048)
    assert longer.model.model.encoder.embed_positions.weight.shape[0] >= 2048 + 2
    ids = torch.randint(5, 100, (1, 2048))
    out = longer.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, num_beams=1)
    assert out.shape[0] == 1


def test_position_init_random_draws_the_table_anew(make_cfg):
    copy = build(make_cfg, "attention=lsg", "model.max_length=1024", *VARIANTS["lsg"])
    fresh = build(make_cfg, "attention=lsg", "model.max_length=1024", "model.position_init=random", *VARIANTS["lsg"])
    tiled, drawn = (b.model.roberta.embeddings.position_embeddings.weight[2:] for b in (copy, fresh))
    assert torch.equal(tiled[:512], tiled[512:1024])  # copied: the 512 pretrained rows twice
    assert not torch.equal(drawn[:512], drawn[512:1024]) and drawn.std().item() == pytest.approx(0.02, rel=0.1)


def test_an_evaluation_at_another_length_really_runs_there(make_cfg, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    words = [" ".join(f"w{(i * 31 + j) % 97}" for j in range(900)) for i in range(4)]
    for split, texts in (("train", words[:3]), ("test", words[3:])):
        (corpus / f"{split}.jsonl").write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n"
                                                       for i, t in enumerate(texts)))
    common = [*TINY, "task=masked_lm", f"task.data_dir={corpus}", "model=roberta", "attention=lsg", *VARIANTS["lsg"],
              "model.max_length=256", "trainer.args.max_steps=2", "model.tokenizer_vocab_size=400"]
    records = {}
    for length in (128, 256, 1024):
        out = tmp_path / str(length)
        records[length] = run(make_cfg(*common, f"model.eval_max_length={length}"), out, [])
        assert records[length]["status"] == "ok", records[length]["error"]
        assert records[length]["eval_max_length"] == length and records[length]["max_length"] == 256
        pieces = json.loads((out / "predictions.json").read_text())["pieces"]
        records[length]["scored"] = sum(p["scored_tokens"] for p in pieces)
    tokens = records[256]["provenance"]["truncation"]["eval"]["tokens"]
    for length, r in records.items():  # the eval split cut into pieces of that length: ceil(stream / (length - 2))
        stream = tokens - 2 * records[256]["provenance"]["truncation"]["eval"]["pieces"]
        assert r["provenance"]["truncation"]["eval"]["pieces"] == -(-stream // (length - 2))
    assert records[128]["scored"] == records[256]["scored"] == records[1024]["scored"]  # the same masked tokens
    assert " max_length=256 eval_max_length=1024 data=" in summary(records[1024])
    assert " max_length=256 data=" in summary(records[256])  # evaluated where it trained: not repeated
    # the trained model is the same in the three runs: only the evaluation differs
    assert len({r["efficiency"]["train_loss"] for r in records.values()}) == 1
    assert records[1024]["artifact"]["fingerprint"] == records[256]["artifact"]["fingerprint"]


def test_a_model_that_cannot_take_the_evaluation_length_is_refused_before_training(make_cfg, tmp_path):
    r = run(make_cfg("task=synth_keys", "model=roberta", *TINY, "model.eval_max_length=1024"), tmp_path / "out", [])
    assert r["status"] == "invalid"
    assert "takes at most 512 tokens (model.max_positions), but model.eval_max_length=1024" in r["error"]


@pytest.mark.slow
def test_the_extrapolation_grid_evaluates_one_checkpoint_at_every_length_without_training(make_cfg, tmp_path):
    keys = ["task=synth_keys", "task.synthetic.doc_words=900", "task.synthetic.n_train=8", "task.synthetic.n_test=8"]
    trained = run(make_cfg(*keys, "model=lsg_roberta", *TINY, *VARIANTS["lsg"], "model.max_length=256",
                           "trainer.args.max_steps=2", "save_model=true"), tmp_path / "train", [])
    assert trained["status"] == "ok", trained["error"]
    store = tmp_path / "store"
    done = subprocess.run([sys.executable, "-m", "lsgbench", "-m", "sweep=extrapolation", *keys, "model=lsg_roberta",
                           *VARIANTS["lsg"], "model.max_length=256", "model.eval_max_length=256,512,1024",
                           f"model.pretrained=run:{trained['run_id']}", f"paths.store_dir={store}",
                           f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    evaluated = [r for r in read_records([store]) if r["provenance"].get("pretrained_run") == trained["run_id"]]
    assert sorted(r["eval_max_length"] for r in evaluated) == [256, 512, 1024]
    for r in evaluated:
        assert r["status"] == "ok" and "train_steps" not in r["efficiency"]
        assert r["provenance"]["truncation"]["eval"]["inputs_cut"] == 8  # ~1,100-token documents: cut at every length
        assert r["provenance"]["truncation"]["eval"]["inputs_dropped_share"] < 1 - r["eval_max_length"] / 1400


def test_a_saved_run_keeps_the_length_it_trained_at_unless_asked_for_another(make_cfg, tmp_path):
    """model.pretrained=run:<id> with model.max_length unset runs at the length that run trained at (it once took
    the task's 4,096 and grew the saved positions to it, silently), also in an evaluation-only run at another
    evaluation length; model.max_length asks for another."""
    keys = ["task=synth_keys", "task.synthetic.doc_words=400", "task.synthetic.n_train=8", "task.synthetic.n_test=4"]
    trained = run(make_cfg(*keys, "model=lsg_roberta", *TINY, *VARIANTS["lsg"], "model.max_length=256",
                           "trainer.args.max_steps=1", "save_model=true"), tmp_path / "train", [])
    assert trained["status"] == "ok", trained["error"]
    again = [*keys, "model=lsg_roberta", *VARIANTS["lsg"], f"model.pretrained=run:{trained['run_id']}",
             "model.init=pretrained"]
    evaluated = run(make_cfg(*again, "model.eval_max_length=512", "trainer.trainable=none"), tmp_path / "eval", [])
    assert evaluated["status"] == "ok", evaluated["error"]
    assert (evaluated["max_length"], evaluated["eval_max_length"]) == (256, 512)
    assert evaluated["provenance"]["pretrained_max_length"] == 256 and "train_steps" not in evaluated["efficiency"]
    longer = run(make_cfg(*again, "model.max_length=512", "trainer.args.max_steps=1"), tmp_path / "longer", [])
    assert longer["status"] == "ok" and (longer["max_length"], longer["eval_max_length"]) == (512, 512)


def test_records_say_how_many_position_parameters_a_build_added(make_cfg, tmp_path):
    """Converting a 512-position backbone to 1,024 tokens tiles 512 more rows; a saved converted model asked for
    more than it takes grows too, and says so; one run at its own length adds none."""
    keys = ["task=synth_keys", "task.synthetic.doc_words=400", "task.synthetic.n_train=8", "task.synthetic.n_test=4"]
    trained = run(make_cfg(*keys, "model=lsg_roberta", *TINY, *VARIANTS["lsg"], "model.max_length=1024",
                           "trainer.args.max_steps=1", "save_model=true"), tmp_path / "train", [])
    assert trained["status"] == "ok", trained["error"]
    hidden = build(make_cfg).model.config.hidden_size
    assert trained["provenance"]["positions_added"] == 512 * hidden  # tiny RoBERTa: 512 positions (+2 reserved)
    again = [*keys, "model=lsg_roberta", *VARIANTS["lsg"], f"model.pretrained=run:{trained['run_id']}",
             "model.init=pretrained", "trainer.args.max_steps=1"]
    same = run(make_cfg(*again), tmp_path / "same", [])
    longer = run(make_cfg(*again, "model.max_length=2048"), tmp_path / "longer", [])
    assert (same["status"], longer["status"]) == ("ok", "ok")
    assert (same["provenance"]["positions_added"], longer["provenance"]["positions_added"]) == (0, 1024 * hidden)


def test_an_evaluation_length_within_one_window_is_warned_about(make_cfg, caplog):
    with caplog.at_level("WARNING"):
        built = build(make_cfg, "model=lsg_roberta", *VARIANTS["lsg"], "model.max_length=1024",
                      "model.eval_max_length=64")
    assert built.attention.get("runs_full_attention_at_eval") and not built.attention.get("runs_full_attention")
    assert any("runs as full attention at the evaluation length, 64 tokens" in r.getMessage() for r in caplog.records)
