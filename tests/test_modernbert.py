"""ModernBERT: a peer encoder with its own alternating attention (its knobs set transformers' config), and a rotary
backbone the converted variants take: globals prepended after the embedding norm, with positions of their own."""

import copy

import pytest
import torch

from lsgbench.attention.lsg import LsgKnobs
from lsgbench.errors import ConfigError
from lsgbench.models import build_model
from lsgbench.models.conversion import convert

from helpers import TEXTS

IDENTITY = LsgKnobs.make(block_size=64, sparse_block_size=0, sparsity_factor=1, sparsity_type="none",
                         num_global_tokens=0, pool_with_global=False, mask_first_token=False,
                         pass_global_tokens_to_decoder=False)


def tiny(make_cfg, *overrides, task="synth_keys"):
    cfg = make_cfg("model=modernbert", f"task={task}", "model.init=random", "model.size=tiny", *overrides)
    return build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir)


def test_its_knobs_set_the_sliding_window_and_the_global_layers(make_cfg):
    built = tiny(make_cfg, "model.max_length=256", "model.attention.window=32", "model.attention.global_every=2")
    config = built.model.config
    assert config.local_attention == 32 and config.layer_types == ["full_attention", "sliding_attention"]
    assert built.attention == {"type": "modernbert", "window": 32, "global_every": 2}
    assert tiny(make_cfg, "model.max_length=16", "model.attention.window=32").attention["runs_full_attention"]


def test_a_converted_modernbert_with_a_window_over_the_input_is_the_original(make_cfg):
    """All-global ModernBERT against LSG with a block over the whole input and no global token: the same logits,
    padding included (rotary positions pass through the converted attention)."""
    built = tiny(make_cfg, "model.max_length=128", "model.attention.global_every=1")
    original = built.model.eval()
    converted = convert(copy.deepcopy(original), "modernbert", IDENTITY, 128, built.tokenizer.cls_token_id,
                        built.tokenizer.mask_token_id).eval()
    ids = torch.randint(5, 300, (2, 40))
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0
    with torch.no_grad():
        torch.testing.assert_close(converted(input_ids=ids, attention_mask=mask).logits,
                                   original(input_ids=ids, attention_mask=mask).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("task, head", [("synth_keys", "ModernBertForSequenceClassification"),
                                        ("synth_qa", "ModernBertForQuestionAnswering"),
                                        ("masked_lm", "ModernBertForMaskedLM")])
def test_lsg_converts_every_head_and_the_globals_get_positions(make_cfg, task, head):
    built = tiny(make_cfg, "attention=lsg", "model.max_length=512", "model.attention.block_size=32",
                 "model.attention.sparse_block_size=32", "model.attention.num_global_tokens=3", task=task)
    model = built.model.eval()
    assert type(model).__name__ == head and model.model.config._attn_implementation == "lsg"
    seen = []
    model.model.layers[0].attn.register_forward_pre_hook(lambda m, a, k: seen.append(k["position_embeddings"][0].shape),
                                                         with_kwargs=True)
    ids = torch.randint(5, 300, (2, 300))
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert seen[0][-2] == 303  # rotary angles for the 3 globals and the 300 tokens
    shape = {"synth_keys": (2, 2), "synth_qa": (2, 300), "masked_lm": (2, 300, len(built.tokenizer))}[task]
    assert (out.start_logits if task == "synth_qa" else out.logits).shape == shape  # the globals are gone
    assert built.added == (r"global_embeddings\.",)  # no position table to grow
    with pytest.raises(ConfigError, match="rotary positions"):
        tiny(make_cfg, "attention=lsg", "model.position_init=random")


def test_a_run_records_the_classifier_pooling(make_cfg, tmp_path):
    from lsgbench.pipeline import run

    overrides = ["model=modernbert", "task=synth_keys", "model.init=random", "model.size=tiny", "model.max_length=256",
                 "task.max_train_samples=16", "task.max_eval_samples=16", "trainer.args.max_steps=1"]
    record = run(make_cfg(*overrides), tmp_path / "out", overrides)
    assert record["status"] == "ok", record["error"]
    assert record["provenance"]["classifier_pooling"] == "cls" and record["attention"]["type"] == "modernbert"
