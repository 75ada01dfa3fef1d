"""Decoder-only models: the Llama backbone converted to lsgbench's causal variants (grouped K/V heads, right padding,
no position table), the Mistral and Gemma peers, and the causal_lm kind (every token predicted once, its loss the
model's own)."""

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from lsgbench.attention.local import LocalKnobs
from lsgbench.errors import ConfigError
from lsgbench.kinds import KINDS
from lsgbench.kinds.causal_lm import lm_metrics
from lsgbench.models import build_model
from lsgbench.models.conversion import convert
from lsgbench.pipeline import run
from lsgbench.tokenizer import train_tokenizer
from lsgbench.train import Collator

from helpers import write_corpus

CLM = KINDS["causal_lm"]
TASK = OmegaConf.create({"kind": "causal_lm"})
DOCS = [{"id": f"d{i}", "text": " ".join(f"wörd{(i * 7 + j) % 50} is here ." for j in range(60 + 13 * i))}
        for i in range(4)]
TINY = ["model.init=random", "model.size=tiny", "model.tokenizer_vocab_size=400"]
SMALL_KNOBS = {"lsg": ["model.attention.block_size=8", "model.attention.sparse_block_size=8",
                       "model.attention.num_global_tokens=2"],
               "local": ["model.attention.window=16"], "dilated": ["model.attention.window=8"],
               "spade": ["model.attention.window=16"], "full": []}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_tokenizer([d["text"] for d in DOCS], 400, tmp_path_factory.mktemp("tok"))


def tiny(make_cfg, *overrides, task="causal_lm"):
    cfg = make_cfg(f"task={task}", *TINY, *overrides)
    return cfg, build_model(cfg.model, cfg.task, [d["text"] for d in DOCS], cfg.paths.cache_dir)


# ------------------------------------------------------------------ the kind

def test_pieces_predict_every_token_of_the_stream_once_at_every_length(tokenizer):
    docs = tokenizer([d["text"] for d in DOCS], add_special_tokens=False)["input_ids"]
    stream = [t for doc in docs for t in (*doc, tokenizer.eos_token_id)]
    for n in (32, 100, 1000):
        features = CLM.encode(DOCS, tokenizer, TASK, n)
        assert all(ids[0] == tokenizer.bos_token_id and len(ids) <= n for ids in features["input_ids"])
        assert all(len(ids) == n for ids in features["input_ids"][:-1])
        assert [t for ids in features["input_ids"] for t in ids[1:]] == stream  # nothing cut, nothing repeated
        assert sum(c for piece in features["chars"] for c in piece) == sum(len(d["text"]) for d in DOCS)
        assert sum(b for piece in features["bytes"] for b in piece) == sum(len(d["text"].encode()) for d in DOCS)
        batch = CLM.collate([{k: v[i] for k, v in features.items()} for i in range(len(features["input_ids"]))],
                            tokenizer, None, False, TASK)
        labels = batch["labels"]
        assert (labels[:, 0] == -100).all() and int((labels != -100).sum()) == len(stream)


def test_metrics_by_hand():
    m = lm_metrics(nll_nats=12.0, tokens=4, chars=20, nbytes=24)
    assert m["lm_loss"] == pytest.approx(3.0) and m["perplexity"] == pytest.approx(math.exp(3.0))
    assert m["bits_per_token"] == pytest.approx(3.0 / math.log(2))
    assert m["bits_per_character"] == pytest.approx(12.0 / math.log(2) / 20)
    assert m["bits_per_byte"] == pytest.approx(12.0 / math.log(2) / 24)
    with pytest.raises(ConfigError, match="no token to predict"):
        lm_metrics(0.0, 0, 0, 0)


@pytest.mark.parametrize("model, attention", [("llama", "full"), ("llama", "lsg"), ("mistral", "mistral"),
                                              ("gemma2", "gemma"), ("gemma3", "gemma")])
def test_the_predicted_loss_equals_the_models_own_logits(make_cfg, model, attention, monkeypatch):
    """Gemma-2 included: the kind applies its final logit soft cap as the model does; small LOGIT_ROWS: the output
    layer runs in chunks."""
    from lsgbench.kinds import causal_lm

    monkeypatch.setattr(causal_lm, "LOGIT_ROWS", 7)
    window = ["model.attention.sliding_window=16"] if attention in ("mistral", "gemma") else []
    cfg, built = tiny(make_cfg, f"model={model}", f"attention={attention}", "model.max_length=64",
                      *SMALL_KNOBS.get(attention, []), *window)
    features = CLM.encode(DOCS, built.tokenizer, cfg.task, 64)
    rows = [{k: v[i] for k, v in features.items()} for i in (0, len(features["input_ids"]) - 1)]  # one padded
    batch = Collator(built, cfg.task)(rows)
    model_ = built.model.eval()
    with torch.no_grad():
        got = CLM.predict(model_, dict(batch), built.tokenizer)[0]
        logits = model_(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = model_(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    total = 0.0
    for row, (nll, n, chars, nbytes) in enumerate(got):
        target = batch["labels"][row, 1:]
        scored = target != -100
        want = F.cross_entropy(logits[row, :-1][scored].double(), target[scored], reduction="sum")
        assert n == int(scored.sum()) > 0 and nll == pytest.approx(want.item(), rel=1e-5)
        assert chars == int(batch["chars"][row, 1:][scored].sum()) and nbytes >= chars
        total += nll
    assert total / sum(g[1] for g in got) == pytest.approx(loss.item(), rel=1e-5)  # transformers' own shifted loss


# ------------------------------------------------------------------ the converted Llama

def test_a_window_over_the_whole_input_is_the_llama_it_was_converted_from(make_cfg):
    """Grouped K/V heads (tiny: 2 query heads, 1 K/V head), rotary positions and padding pass through the
    converted attention unchanged: logits equal the original model's wherever a token is real."""
    cfg, built = tiny(make_cfg, "model=llama", "model.max_length=64")
    original = built.model.eval()
    assert original.config.num_key_value_heads == 1 < original.config.num_attention_heads
    knobs = LocalKnobs.make(mode="sliding", window=200, num_global_tokens=0).for_decoder()
    converted = convert(copy.deepcopy(original), "llama", knobs, 64, None, None).eval()
    assert converted.config._attn_implementation == "local"
    ids = torch.randint(5, 300, (2, 40))
    mask = torch.ones_like(ids)
    mask[1, 29:] = 0
    with torch.no_grad():
        want, got = original(input_ids=ids, attention_mask=mask).logits, converted(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1, :29], want[1, :29], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", ["lsg", "local", "dilated", "spade"])
def test_no_converted_decoder_lets_a_token_change_an_earlier_prediction(make_cfg, attention):
    """Through the whole model (every layer, the SPADE branch): logits before position t do not move when token t
    changes. Exact for attention; SPADE's FFT convolution moves them by round-off only."""
    cfg, built = tiny(make_cfg, "model=llama", f"attention={attention}", "model.max_length=96",
                      *SMALL_KNOBS[attention])
    assert built.attention["causal"] is True and built.attention["pool_with_global"] is False
    model = built.model.eval().double()
    ids = torch.randint(5, 300, (1, 90), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(input_ids=ids).logits
        for t in (1, 17, 40, 89):
            changed = ids.clone()
            changed[0, t] = (changed[0, t] + 1) % 300 + 5
            after = model(input_ids=changed).logits
            if attention == "spade":
                torch.testing.assert_close(after[:, :t], before[:, :t], atol=1e-10, rtol=0)
            else:
                assert torch.equal(after[:, :t], before[:, :t]), t
            assert not torch.equal(after[:, t:], before[:, t:])


def test_decoder_settings_and_errors(make_cfg):
    cfg, built = tiny(make_cfg, "model=llama", "attention=lsg", "model.max_length=4096")
    assert built.tokenizer.padding_side == "right" and built.model.config.max_position_embeddings >= 4096
    assert built.attention["mask_first_token"] is False and built.added == ()  # no global embeddings, no table
    with pytest.raises(ConfigError, match="rotary positions"):
        tiny(make_cfg, "model=llama", "attention=lsg", "model.position_init=random")
    with pytest.raises(ConfigError, match="task=wikitext103_clm"):
        tiny(make_cfg, "model=llama", task="wikitext103")
    _, gemma = tiny(make_cfg, "model=gemma3", "model.max_length=128")
    types = gemma.model.config.layer_types
    assert gemma.model.config.sliding_window == 512 and types == ["sliding_attention", "sliding_attention"]
    assert gemma.attention == {"type": "gemma", "sliding_window": 512, "global_every": 6, "causal": True,
                               "runs_full_attention": True}
    _, mistral = tiny(make_cfg, "model=mistral", "model.max_length=128", "model.attention.sliding_window=32")
    assert mistral.model.config.sliding_window == 32 and "runs_full_attention" not in mistral.attention


def test_a_causal_lm_run_records_its_figures(make_cfg, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", DOCS[:3], DOCS[3:])
    overrides = [*TINY, "task=causal_lm", f"task.data_dir={corpus}", "model=llama", "attention=lsg",
                 "model.max_length=128", *SMALL_KNOBS["lsg"], "trainer.args.max_steps=2",
                 "trainer.args.per_device_train_batch_size=2", "model.eval_max_length=256"]
    record = run(make_cfg(*overrides), tmp_path / "out", overrides)
    assert record["status"] == "ok", record["error"]
    m = record["metrics"]
    assert m["perplexity"] == pytest.approx(math.exp(m["lm_loss"]))
    assert m["bits_per_token"] == pytest.approx(m["lm_loss"] / math.log(2))
    assert 2 < m["bits_per_character"] < m["bits_per_token"]  # a token holds several characters
    assert record["attention"]["causal"] is True and record["eval_max_length"] == 256
    pieces = json.loads((tmp_path / "out" / "predictions.json").read_text())["pieces"]
    assert sum(p["chars"] for p in pieces) == len(DOCS[3]["text"])
    assert sum(p["loss_nats"] for p in pieces) / sum(p["predicted_tokens"] for p in pieces) == pytest.approx(m["lm_loss"])


def test_an_enwik8_run_scores_every_byte_of_its_test_span(make_cfg, tmp_path):
    """task=enwik8 on a local copy: one stream cut by bytes; bits per byte over exactly the test span's bytes."""
    stream = "".join(d["text"] + "\n" for d in DOCS)
    corpus = tmp_path / "enwik8"
    corpus.mkdir()
    (corpus / "train.jsonl").write_text(json.dumps({"id": "enwik8", "text": stream}) + "\n")
    size = len(stream.encode())
    splits = f"{{train:[0,{size - 800}],validation:[{size - 800},{size - 400}],test:[{size - 400},{size}]}}"
    overrides = [*TINY, "task=enwik8", f"task.data_dir={corpus}", f"task.byte_splits={splits}", "model=llama",
                 "attention=local", "model.max_length=64", *SMALL_KNOBS["local"], "trainer.args.max_steps=2"]
    record = run(make_cfg(*overrides), tmp_path / "out", overrides)
    assert record["status"] == "ok", record["error"]
    assert record["provenance"]["splits"]["eval"] == f"bytes {size - 400:,}-{size:,} of train.jsonl"
    pieces = json.loads((tmp_path / "out" / "predictions.json").read_text())["pieces"]
    assert sum(p["bytes"] for p in pieces) == 400
    nats = sum(p["loss_nats"] for p in pieces)
    assert record["metrics"]["bits_per_byte"] == pytest.approx(nats / math.log(2) / 400)


NO_GLOBALS = "model.attention.num_global_tokens=0"


@pytest.mark.parametrize("attention, knobs", [
    ("lsg", ["model.attention.sparsity_type=pooling"]), ("lsg", ["model.attention.sparsity_type=norm"]),
    ("lsg", ["model.attention.sparsity_type=stride"]), ("lsg", ["model.attention.sparsity_type=pooling", NO_GLOBALS]),
    ("lsg", ["model.attention.sparsity_type=norm", NO_GLOBALS]),
    ("lsg", ["model.attention.sparsity_type=lsh", NO_GLOBALS]), ("local", []), ("local", ["model.attention.num_global_tokens=2"]),
    ("local", ["model.attention.mode=disjoint", "model.attention.block_size=8"]),
    ("dilated", ["model.attention.dilation=[2]"])])
def test_generating_with_the_kv_cache_is_generating_without_it(make_cfg, attention, knobs):
    """Each new token's logits from the cache (the new query over the cached keys within its reach) equal a full
    forward's over the whole sequence so far; a variant with a reach and no globals keeps only its window in the
    cache (LSG: 32 tokens, its window of blocks and the block its sparse keys come from, of the 65)."""
    cfg, built = tiny(make_cfg, "model=llama", f"attention={attention}", "model.max_length=128",
                      *SMALL_KNOBS[attention], *knobs)
    model = built.model.eval().double()
    ids = torch.randint(5, 300, (1, 45), generator=torch.Generator().manual_seed(1))
    runs = [model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False,
                           use_cache=cached, output_logits=True, return_dict_in_generate=True, pad_token_id=1)
            for cached in (True, False)]
    assert torch.equal(runs[0].sequences, runs[1].sequences) and runs[0].sequences.shape[1] == 65
    for with_cache, without in zip(runs[0].logits, runs[1].logits):
        torch.testing.assert_close(with_cache, without, atol=1e-9, rtol=1e-9)
    window = built.knobs.cache_window()
    assert (window is not None) == (built.knobs.num_global_tokens == 0)
    assert window in (None, 32 if attention == "lsg" else built.knobs.reach() + 1)
    with torch.no_grad():
        out = model(input_ids=runs[0].sequences, use_cache=True)
    cached = [layer.keys.shape[2] for layer in out["cache"].layers]
    assert cached == [window - 1 if window else 65] * 2


@pytest.mark.parametrize("attention, knobs, why", [("spade", [], "keeps no recurrent state"),
                                                   ("lsg", ["model.attention.sparsity_type=bos_pooling"],
                                                    "the first token's query")])
def test_a_variant_that_cannot_use_a_kv_cache_says_why(make_cfg, attention, knobs, why):
    cfg, built = tiny(make_cfg, "model=llama", f"attention={attention}", "model.max_length=128",
                      *SMALL_KNOBS[attention], *knobs)
    ids = torch.randint(5, 300, (1, 45))
    with pytest.raises(NotImplementedError, match=why):
        built.model.eval().generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=3,
                                    do_sample=False, pad_token_id=1)


def test_rope_scaling_reaches_the_rotary_settings_and_is_checked(make_cfg, tmp_path):
    cfg, built = tiny(make_cfg, "model=llama", "model.max_length=64", "model.rope_scaling={rope_type:linear,factor:4.0}")
    assert built.model.config.rope_parameters["rope_type"] == "linear"
    rotary = built.model.model.rotary_emb
    _, plain = tiny(make_cfg, "model=llama", "model.max_length=64")
    torch.testing.assert_close(rotary.inv_freq, plain.model.model.rotary_emb.inv_freq / 4)  # positions 4x slower
    _, gemma = tiny(make_cfg, "model=gemma3", "model.max_length=64", "model.rope_scaling={rope_type:linear,factor:8}")
    assert gemma.model.config.rope_parameters["full_attention"]["factor"] == 8  # the global layers'
    assert gemma.model.config.rope_parameters["sliding_attention"]["rope_type"] == "default"
    with pytest.raises(ConfigError, match=r"rope_type='wobbly' is unknown; choose one of \['dynamic'"):
        tiny(make_cfg, "model=llama", "model.rope_scaling={rope_type:wobbly,factor:2}")
    with pytest.raises(ConfigError, match="factor=0.5 must be a number >= 1"):
        tiny(make_cfg, "model=llama", "model.rope_scaling={rope_type:linear,factor:0.5}")
    with pytest.raises(ConfigError, match="applies to rotary positions; model 'roberta'"):
        tiny(make_cfg, "model=roberta", "model.rope_scaling={rope_type:linear,factor:2}", task="synth_keys")
    overrides = [*TINY, "task=causal_lm", "task.data_dir=unused", "model=llama", "model.rope_scaling={rope_type:yarn,factor:2.0}"]
    from lsgbench.checks import check_run_config
    check_run_config(make_cfg(*overrides))  # a mapping of transformers' fields: not refused as unknown keys
