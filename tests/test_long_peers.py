"""LongT5 (local, transient-global) and PEGASUS-X as peers: their own attention knobs, tiny random models
trained and generating through the real pipeline, classifying with lsgbench's encoder head, no
absolute-position limit, clear errors."""

import json

import pytest
import torch

from lsgbench.attention import VARIANTS, attention_label
from lsgbench.errors import ConfigError
from lsgbench.models import FAMILIES, build_model
from lsgbench.pipeline import run

from helpers import TEXTS

TINY = ["model.init=random", "model.size=tiny"]
EXTRACT = ["task=synth_extract", "task.synthetic.doc_sentences=12", "task.synthetic.n_train=8",
           "task.synthetic.n_test=2", "task.generation.max_new_tokens=4", "trainer.args.max_steps=1",
           "trainer.args.per_device_train_batch_size=4", "trainer.args.per_device_eval_batch_size=2"]
MODELS = {  # model -> (small-knob overrides so the tiny run is block-sparse at 512 tokens, expected label)
    "longt5_local": (["model.attention.local_radius=31"], "longt5 local r=31"),
    "longt5_tglobal": (["model.attention.local_radius=31", "model.attention.global_block_size=8"],
                       "longt5 transient-global r=31 gb=8"),
    "pegasus_x": (["model.attention.block_size=64", "model.attention.num_global_tokens=4"],
                  "pegasus_x b=64 g=4 stagger=True"),
}


def _build(make_cfg, *overrides):
    cfg = make_cfg(*TINY, *overrides)
    return build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir)


@pytest.mark.parametrize("model", list(MODELS))
def test_long_peers_train_one_step_and_generate(make_cfg, tmp_path, model):
    knobs, label = MODELS[model]
    overrides = [f"model={model}", *EXTRACT, "model.max_length=512", *knobs]
    record = run(make_cfg(*TINY, *overrides), tmp_path / "out", overrides, None)
    assert record["status"] == "ok", record["error"]
    assert record["efficiency"]["train_steps"] == 1 and record["max_length"] == 512
    assert {"rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len"} <= set(record["metrics"])
    assert attention_label(record["attention"]) == label and "runs_full_attention" not in record["attention"]
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert len(predictions["predictions"]) == 2


@pytest.mark.parametrize("model", list(MODELS))
def test_random_init_starts_the_decoder_from_pad_and_generates(make_cfg, model):
    built = _build(make_cfg, f"model={model}", *EXTRACT, "model.max_length=256")
    config = built.model.config
    assert config.decoder_start_token_id == built.tokenizer.pad_token_id
    assert built.model.generation_config.decoder_start_token_id == built.tokenizer.pad_token_id
    assert built.attention["type"] == VARIANTS[built.attention["type"]].name
    ids = torch.randint(5, 200, (2, 40))
    out = built.model.eval().generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=3)
    assert out.shape[0] == 2 and (out[:, 0] == built.tokenizer.pad_token_id).all() and out.shape[1] <= 4


def test_model_files_set_their_attention_and_the_yaml_defaults_are_the_base_checkpoints(make_cfg):
    local, tglobal, pegx = (make_cfg(f"model={m}").model for m in MODELS)
    assert local.attention.encoder_attention_type == "local" and local.pretrained == "google/long-t5-local-base"
    assert tglobal.attention.encoder_attention_type == "transient-global"
    assert (tglobal.attention.local_radius, tglobal.attention.global_block_size) == (127, 16)
    assert tglobal.pretrained == "google/long-t5-tglobal-base" and pegx.pretrained == "google/pegasus-x-base"
    assert (pegx.attention.block_size, pegx.attention.num_global_tokens, pegx.attention.stagger_local_blocks) == \
        (512, 128, True)
    assert local.family == tglobal.family == "longt5" and FAMILIES["longt5"].position_field is None


@pytest.mark.parametrize("model, knob, value, message", [
    ("longt5_local", "encoder_attention_type", "global", "encoder_attention_type='global' is unknown"),
    ("longt5_tglobal", "local_radius", "0", "local_radius=0 must be >= 1"),
    ("longt5_tglobal", "global_block_size", "0", "global_block_size=0 must be >= 1"),
    ("pegasus_x", "block_size", "63", "block_size=63 must be even when stagger_local_blocks is true"),
    ("pegasus_x", "block_size", "0", "block_size=0 must be >= 1"),
    ("pegasus_x", "num_global_tokens", "0", "num_global_tokens=0 must be >= 1"),
    ("pegasus_x", "stagger_local_blocks", "maybe", "stagger_local_blocks='maybe' must be true or false"),
])
def test_bad_knobs_fail_naming_the_knob(make_cfg, model, knob, value, message):
    with pytest.raises(ConfigError, match=message):
        _build(make_cfg, f"model={model}", *EXTRACT, f"model.attention.{knob}={value}")


KEYS = ["task=synth_keys", "task.synthetic.doc_words=300", "task.synthetic.n_train=8", "task.synthetic.n_test=4",
        "trainer.args.max_steps=1", "trainer.args.per_device_train_batch_size=4"]


@pytest.mark.parametrize("model", list(MODELS))
def test_long_peers_classify_with_lsgbench_encoder_head(make_cfg, tmp_path, model):
    knobs, label = MODELS[model]
    overrides = [f"model={model}", *KEYS, "model.max_length=512", *knobs]
    record = run(make_cfg(*TINY, *overrides), tmp_path / "out", overrides, None)
    assert record["status"] == "ok", record["error"]
    assert {"accuracy", "f1_macro"} <= set(record["metrics"]) and attention_label(record["attention"]) == label
    built = _build(make_cfg, f"model={model}", *KEYS, "model.max_length=512", *knobs)
    assert type(built.model).__name__.endswith("EncoderForSequenceClassification")
    assert not any("decoder" in name for name, _ in built.model.named_parameters())  # the encoder alone


@pytest.mark.parametrize("model, knobs, reaches", [
    ("longt5_local", ["model.attention.local_radius=15"], False),  # two layers of radius 15: ~64 tokens
    ("longt5_tglobal", ["model.attention.local_radius=15", "model.attention.global_block_size=8"], True),
    ("pegasus_x", ["model.attention.block_size=64", "model.attention.num_global_tokens=4"], True),  # via globals
])
def test_what_the_first_token_the_head_reads_can_see(make_cfg, model, knobs, reaches):
    ids = torch.randint(5, 200, (1, 1000))
    far = ids.clone()
    far[0, 900] = 7
    built = _build(make_cfg, f"model={model}", *KEYS, "model.max_length=1000", *knobs)
    encoder = built.model.eval().encoder
    with torch.no_grad():
        change = (encoder(input_ids=far).last_hidden_state[:, 0] - encoder(input_ids=ids).last_hidden_state[:, 0])
    assert (change.abs().max().item() > 1e-6) is reaches, change.abs().max().item()


@pytest.mark.parametrize("model", ["longt5_tglobal", "pegasus_x"])
def test_a_saved_generation_checkpoint_loads_into_the_classifier(make_cfg, tmp_path, model):
    knobs = MODELS[model][0]
    saved = _build(make_cfg, f"model={model}", *EXTRACT, "model.max_length=256", *knobs)
    saved.model.save_pretrained(tmp_path / "ckpt")
    saved.tokenizer.save_pretrained(tmp_path / "ckpt")
    loaded = _build(make_cfg, f"model={model}", *KEYS, "model.init=pretrained", f"model.pretrained={tmp_path / 'ckpt'}",
                    "model.max_length=256", *knobs)
    encoder = saved.model.get_encoder().state_dict()
    assert encoder.keys() == loaded.model.encoder.state_dict().keys()
    assert all(torch.equal(w, loaded.model.encoder.state_dict()[k]) for k, w in encoder.items())
    assert loaded.model.classifier.out_proj.out_features == 2


def test_pegasus_x_cannot_run_another_variant(make_cfg):
    with pytest.raises(ConfigError, match=r"attention=lsg is not available for model 'pegasus_x'.*\['pegasus_x'\]"):
        _build(make_cfg, "model=pegasus_x", "attention=lsg", *EXTRACT)


@pytest.mark.parametrize("model, knobs, length, full", [
    ("longt5_local", [], 128, True),                      # blocks of local_radius + 1 = 128 hold it all
    ("longt5_local", [], 129, False),
    ("pegasus_x", [], 256, True),                         # staggered: half a block of 512
    ("pegasus_x", [], 300, False),
    ("pegasus_x", ["model.attention.stagger_local_blocks=false"], 512, True),
])
def test_a_window_that_holds_the_whole_input_is_recorded(make_cfg, model, knobs, length, full):
    built = _build(make_cfg, f"model={model}", *EXTRACT, f"model.max_length={length}", *knobs)
    assert built.attention.get("runs_full_attention", False) is full
    assert attention_label(built.attention).endswith("(full-attention fallback)") is full


def test_no_position_table_means_no_length_limit(make_cfg):
    # max_length beyond the model file's max_positions, and the task's length uncut when max_length is null
    built = _build(make_cfg, "model=longt5_tglobal", *EXTRACT, "model.max_length=20000")
    assert built.max_length == 20000
    built = _build(make_cfg, "model=pegasus_x", *EXTRACT, "model.max_positions=512", "task.max_source_length=3000")
    assert built.max_length == 3000


@pytest.mark.parametrize("model", ["longt5_local", "longt5_tglobal"])
def test_longt5_runs_forward_and_backward_at_2048_tokens(make_cfg, model):
    built = _build(make_cfg, f"model={model}", *EXTRACT, "model.max_length=2048", "model.attention.local_radius=63")
    assert "runs_full_attention" not in built.attention
    ids = torch.randint(5, 200, (1, 2048))
    loss = built.model.train()(input_ids=ids, attention_mask=torch.ones_like(ids),
                               labels=torch.randint(5, 200, (1, 6))).loss
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in built.model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_a_saved_checkpoint_loads_and_its_weight_fixing_knobs_cannot_be_changed(make_cfg, tmp_path):
    saved = _build(make_cfg, "model=longt5_tglobal", *EXTRACT, "model.max_length=256")
    saved.model.save_pretrained(tmp_path / "ckpt")
    saved.tokenizer.save_pretrained(tmp_path / "ckpt")
    pretrained = ["model.init=pretrained", f"model.pretrained={tmp_path / 'ckpt'}", "model.max_length=4096"]
    loaded = _build(make_cfg, "model=longt5_tglobal", *EXTRACT, *pretrained)
    assert loaded.max_length == 4096 and loaded.model.config.encoder_attention_type == "transient-global"
    assert torch.equal(loaded.model.shared.weight, saved.model.shared.weight)
    with pytest.raises(ConfigError, match="trained with encoder_attention_type='transient-global', but "
                                          "model.attention.encoder_attention_type='local'"):
        _build(make_cfg, "model=longt5_local", *EXTRACT, *pretrained)
