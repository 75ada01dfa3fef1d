"""Convert a short-context BERT / RoBERTa / BART / Pegasus checkpoint into a long model directory.

    python -m lsgbench.convert FacebookAI/roberta-base --max-length 4096 --out lsg-roberta-4096 \
        --block-size 128 --sparsity-type norm --num-labels 2
    python -m lsgbench.convert facebook/bart-base --attention local --window 256 --out local-bart-4096

The directory holds the base architecture's config with the knobs (for LSG also ccdv's fields:
knobs in the config, `global_embeddings.weight` beside the pretrained weights) and the tokenizer;
run it with `model=lsg_roberta model.pretrained=lsg-roberta-4096`. Knobs not given take their
defaults from conf/attention/<variant>.yaml. No remote code is written or executed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from .attention import CONVERTED, VARIANTS
from .errors import ConfigError
from .kinds import KINDS
from .models import resolve_checkpoint
from .models.families import FAMILIES
from .models.ccdv import stored_knobs
from .models.conversion import convert as convert_model
from .models.layouts import LAYOUTS
from .record import apply_umask

def convert(pretrained: str, out: str, max_length: int, attention: str = "lsg", knobs: dict | None = None,
            head: str | None = None, num_labels: int | None = None, trust_remote_code: bool = False) -> str:
    """Convert `pretrained` with `attention` (knobs: changes to its defaults) and save it to `out`."""
    from omegaconf import OmegaConf
    from transformers import AutoConfig, AutoTokenizer

    if attention not in CONVERTED:
        raise ConfigError(f"--attention {attention!r} is not a converted variant; choose one of {CONVERTED}")
    variant_knobs = VARIANTS[attention].make(**(knobs or {}))
    path = resolve_checkpoint(pretrained)
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    family = config.model_type
    if family not in LAYOUTS:
        raise ConfigError(f"{pretrained!r} is a {family!r} model; conversion supports {sorted(LAYOUTS)}")
    if stored_knobs(config) is not None:
        raise ConfigError(f"{pretrained!r} is already a converted long model")
    heads = FAMILIES[family].heads
    head = head or next(iter(heads))
    if head not in heads:
        raise ConfigError(f"--head {head!r}: a {family!r} model has heads for {list(heads)}")
    if num_labels is not None and head != "classification":
        raise ConfigError(f"--num-labels sets a classifier's classes; the {head} head has none")
    num_labels = 2 if num_labels is None else num_labels
    task = OmegaConf.create({"label_names": [str(i) for i in range(num_labels)]})  # all a head's config reads
    load_args = KINDS[head].pretrained_config(config, task, pretrained)
    model = heads[head].from_pretrained(path, config=config, trust_remote_code=trust_remote_code, **load_args)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    bos = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    convert_model(model, family, variant_knobs, max_length, bos, tokenizer.mask_token_id)
    tokenizer.model_max_length = max_length
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    for file in Path(out).iterdir():
        if file.is_file():
            apply_umask(file)
    return out


def _knob_flags(parser: argparse.ArgumentParser) -> list[str]:
    """--<knob> flags for every knob of every converted variant (a variant rejects the others')."""
    names = {}
    for name in CONVERTED:
        for field in dataclasses.fields(VARIANTS[name]):
            names.setdefault(field.name, field)
    for knob, field in names.items():
        flag = "--" + knob.replace("_", "-")
        kind = {"int": int, "float": float, "str": str}.get(str(field.type))
        if str(field.type) == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif kind is not None:
            parser.add_argument(flag, type=kind, default=None)
        else:  # a list of integers
            parser.add_argument(flag, type=lambda text: [int(x) for x in text.split(",")], default=None,
                                help="comma-separated integers")
    return list(names)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lsgbench.convert", description=__doc__.split("\n\n")[0])
    p.add_argument("pretrained", help="hub id, local directory or package:<module>/<dir>")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--max-length", type=int, default=4096)
    p.add_argument("--attention", default="lsg", choices=CONVERTED)
    p.add_argument("--head", choices=sorted(KINDS), default=None,
                   help="the task kind whose head the model gets; default: the family's main head (summarization "
                        "for BART and Pegasus, classification otherwise)")
    p.add_argument("--num-labels", type=int, default=None, help="classification: the number of classes (default 2)")
    p.add_argument("--trust-remote-code", action="store_true", help="run code shipped with the checkpoint (off by default)")
    knob_names = _knob_flags(p)
    args = p.parse_args(argv)
    knobs = {k: getattr(args, k) for k in knob_names if getattr(args, k) is not None}
    try:
        out = convert(args.pretrained, args.out, args.max_length, args.attention, knobs, args.head, args.num_labels,
                      args.trust_remote_code)
    except (ConfigError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote a {args.attention} model ({args.max_length} tokens, {VARIANTS[args.attention].make(**knobs).label()}) "
          f"to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
