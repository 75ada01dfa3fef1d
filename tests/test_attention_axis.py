"""Attention as its own config axis: any backbone with any variant its family supports; saved
combinations (lsg_roberta, ...) are the same models under one name."""

import pytest
import torch
from omegaconf import OmegaConf

from lsgbench.attention import CONVERTED, VARIANTS, attention_label
from lsgbench.config import attention_shorthand
from lsgbench.errors import ConfigError
from lsgbench.models import build_model

from helpers import TEXTS

TINY = ("model.init=random", "model.size=tiny")


def test_a_saved_combination_is_the_backbone_with_the_variant(make_cfg):
    axis = make_cfg("task=synth_keys", "model=roberta", "attention=lsg", *TINY)
    saved = make_cfg("task=synth_keys", "model=lsg_roberta", *TINY)
    assert OmegaConf.to_container(axis.model.attention) == OmegaConf.to_container(saved.model.attention)
    differs = {k for k in axis.model if axis.model[k] != saved.model[k]}
    assert differs == {"name"}
    built = [build_model(c.model, c.task, TEXTS, c.paths.cache_dir) for c in (axis, saved)]
    assert built[0].attention == built[1].attention and built[0].max_length == built[1].max_length == 4096
    assert attention_label(built[0].attention) == attention_label(built[1].attention) == "lsg b=128 s=128 f=2 norm g=1"
    shapes = [{k: v.shape for k, v in b.model.state_dict().items()} for b in built]
    assert shapes[0] == shapes[1]


@pytest.mark.parametrize("model, task", [("roberta", "synth_keys"), ("bert", "synth_keys"), ("bart", "synth_extract"),
                                         ("pegasus", "synth_extract")])
@pytest.mark.parametrize("attention", CONVERTED)
def test_every_backbone_runs_every_converted_variant(make_cfg, model, task, attention):
    cfg = make_cfg(f"task={task}", f"model={model}", f"attention={attention}", *TINY, "model.max_length=300")
    built = build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir)
    assert built.attention["type"] == attention and built.max_length == 300
    ids = torch.randint(5, 200, (2, 300))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    inputs["labels"] = torch.randint(5, 200, (2, 7)) if task == "synth_extract" else torch.tensor([0, 1])
    loss = built.model.train()(**inputs).loss
    loss.backward()
    assert torch.isfinite(loss)


def test_a_variant_the_family_does_not_run_is_a_clear_error(make_cfg):
    cfg = make_cfg("task=synth_keys", "model=bigbird", "attention=local", *TINY)
    with pytest.raises(ConfigError, match=r"attention=local is not available for model 'bigbird'.*it runs \['bigbird'\]"):
        build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir)


def test_full_attention_cuts_the_task_length_to_the_backbone_and_converted_variants_take_it_all(make_cfg):
    full = make_cfg("task=synth_keys", "model=roberta", *TINY)
    lsg = make_cfg("task=synth_keys", "model=roberta", "attention=local", *TINY)
    assert build_model(full.model, full.task, TEXTS, full.paths.cache_dir).max_length == 512
    assert build_model(lsg.model, lsg.task, TEXTS, lsg.paths.cache_dir).max_length == 4096


def test_a_model_file_can_set_its_attention_knobs(make_cfg):
    assert make_cfg("model=led").model.attention.attention_window == 1024
    assert make_cfg("model=longformer").model.attention.attention_window == 512
    assert make_cfg("model=led", "model.attention.attention_window=64").model.attention.attention_window == 64


def test_attention_knob_shorthand_on_the_command_line():
    assert attention_shorthand("attention.block_size=64") == "model.attention.block_size=64"
    assert attention_shorthand("+attention.blok_size=64") == "+model.attention.blok_size=64"
    assert attention_shorthand("attention=lsg") == "attention=lsg"
    assert attention_shorthand("model.attention.window=8") == "model.attention.window=8"


def test_every_variant_yaml_holds_exactly_the_knobs_of_its_class():
    for name, knobs in VARIANTS.items():
        defaults = knobs.defaults()
        assert defaults["type"] == name
        assert knobs.from_config(defaults).to_dict() == defaults


def test_a_saved_combination_refuses_another_variant_and_leftover_knobs_do_not_hide_the_real_error(make_cfg):
    cfg = make_cfg("task=synth_keys", "model=lsg_roberta", "attention=local", *TINY)
    with pytest.raises(ConfigError, match="model=lsg_roberta is model=roberta attention=lsg; for local attention use "
                                          "model=roberta attention=local"):
        build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir)
    cfg = make_cfg("task=synth_extract", "model=led", "attention=full", *TINY)  # led.yaml sets attention_window
    with pytest.raises(ConfigError, match="attention=full is not available for model 'led'"):
        build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir)


def test_dilations_are_checked_against_the_head_count_when_the_model_is_built(make_cfg):
    cfg = make_cfg("task=synth_keys", "model=roberta", "attention=dilated", *TINY, "model.max_length=256",
                   "model.attention.dilation=[1,2,3]")
    with pytest.raises(ConfigError, match="has 3 values, but the model has 2 attention heads"):
        build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir)
    cfg = make_cfg("task=synth_keys", "model=roberta", "attention=dilated", *TINY, "model.attention.dilation=2")
    assert build_model(cfg.model, cfg.task, TEXTS, cfg.paths.cache_dir).attention["dilation"] == [2]


def test_the_backend_knob_is_checked_labelled_when_chosen_and_refuses_dropout_under_flex():
    from lsgbench.attention.knobs import runs_flex

    lsg, local = VARIANTS["lsg"], VARIANTS["local"]
    with pytest.raises(ConfigError, match=r"lsg attention: backend='triton' is unknown; choose one of \['auto', 'blocks', 'flex'\]"):
        lsg.make(backend="triton")
    assert lsg.make(block_size=64).label() == "lsg b=64 s=128 f=2 norm g=1"  # auto: not named
    assert local.make(backend="blocks").label() == "local sliding w=512 g=0 blocks"
    cpu = torch.zeros(1, 1, 4, 2)
    assert not runs_flex(lsg.make(), cpu, 0.0)  # auto on CPU: blocks
    assert not runs_flex(lsg.make(backend="blocks"), cpu, 0.0)
    assert runs_flex(lsg.make(backend="flex"), cpu, 0.0)
    with pytest.raises(ConfigError, match="backend=flex cannot apply attention dropout"):
        runs_flex(local.make(backend="flex"), cpu, 0.1)
    if torch.cuda.is_available():
        gpu = cpu.cuda()
        assert runs_flex(lsg.make(), gpu, 0.0) and not runs_flex(lsg.make(), gpu, 0.1)


def test_the_dropout_knob_is_typed_checked_and_overrides_the_backbones(caplog):
    import types

    from lsgbench.attention import knobs as knobs_module
    from lsgbench.models.attention_interface import attention_forward

    lsg = VARIANTS["lsg"]
    assert lsg.make().dropout is None and lsg.make(dropout=0).dropout == 0.0
    with pytest.raises(ConfigError, match=r"lsg attention: dropout=1.5 must be in \[0, 1\), or null"):
        lsg.make(dropout=1.5)
    with pytest.raises(ConfigError, match=r"lsg attention: dropout='high' must be a number or null"):
        lsg.make(dropout="high")
    seen = []

    class Spy(type(lsg.make())):
        def attend(self, query, key, value, keep, scaling, dropout, causal=False):
            seen.append(dropout)
            return query

    q = torch.zeros(1, 2, 8, 4)
    for knob, training, expected in [(None, True, 0.1), (0.0, True, 0.0), (0.3, True, 0.3), (0.3, False, 0.0)]:
        module = types.SimpleNamespace(long_attention=Spy.make(dropout=knob), training=training)
        attention_forward(module, q, q, q, None, dropout=0.1)  # 0.1: the backbone's attention dropout
        assert seen.pop() == expected

    knobs_module._warned = False
    knobs_module.backends_ran()  # forget the calls above
    cuda_like = types.SimpleNamespace(is_cuda=True)
    with caplog.at_level("WARNING"):
        assert not knobs_module.runs_flex(lsg.make(), cuda_like, 0.1)
        assert not knobs_module.runs_flex(lsg.make(), cuda_like, 0.1)
        assert knobs_module.runs_flex(lsg.make(), cuda_like, 0.0)
    warned = [r.getMessage() for r in caplog.records if "FlexAttention has none" in r.getMessage()]
    assert len(warned) == 1 and "model.attention.dropout=0" in warned[0] and "dropout is 0.1" in warned[0]
    assert knobs_module.backends_ran() == {"backend": "blocks, flex", "dropout": 0.1}
    assert knobs_module.backends_ran() is None  # read once
