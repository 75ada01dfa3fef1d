"""Convert a short-context BERT / RoBERTa / BART checkpoint into an LSG model directory.

    python -m lsgbench.convert FacebookAI/roberta-base --max-length 4096 --out lsg-roberta-4096 \
        --block-size 128 --sparsity-type norm --num-labels 2

The directory holds the base architecture's config with the LSG fields (ccdv layout: knobs in the
config, `global_embeddings.weight` beside the pretrained weights) and the tokenizer; run it with
`model=lsg_roberta model.pretrained=lsg-roberta-4096`. No remote code is written or executed.
"""

from __future__ import annotations

import argparse
import sys

from .errors import ConfigError
from .models import resolve_checkpoint
from omegaconf import OmegaConf

from .models.conversion import LAYOUTS, conversion_knobs, convert as convert_model, stored_knobs


def convert(pretrained: str, out: str, max_length: int, knobs: dict, head: str | None = None, num_labels: int = 2,
            trust_remote_code: bool = False) -> str:
    from transformers import (AutoConfig, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification,
                              AutoTokenizer)

    path = resolve_checkpoint(pretrained)
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    family = config.model_type
    if family not in LAYOUTS:
        raise ConfigError(f"{pretrained!r} is a {family!r} model; LSG conversion supports {sorted(LAYOUTS)}")
    if stored_knobs(config) is not None:
        raise ConfigError(f"{pretrained!r} is already a converted long model")
    head = head or ("seq2seq" if LAYOUTS[family].is_seq2seq else "classification")
    if head == "seq2seq" and not LAYOUTS[family].is_seq2seq:
        raise ConfigError(f"--head seq2seq needs an encoder-decoder; {pretrained!r} is {family!r}")
    if head == "classification":
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels,
                                                                   trust_remote_code=trust_remote_code)
    else:
        model = AutoModelForSeq2SeqLM.from_pretrained(path, trust_remote_code=trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    bos = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    convert_model(model, family, conversion_knobs(OmegaConf.create({"type": "lsg", **knobs})), max_length, bos,
                  tokenizer.mask_token_id)
    tokenizer.model_max_length = max_length
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lsgbench.convert", description=__doc__.split("\n\n")[0])
    p.add_argument("pretrained", help="hub id, local directory or package:<module>/<dir>")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--max-length", type=int, default=4096)
    p.add_argument("--head", choices=["classification", "seq2seq"], default=None,
                   help="default: seq2seq for BART, classification otherwise")
    p.add_argument("--num-labels", type=int, default=2)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--sparse-block-size", type=int, default=128)
    p.add_argument("--sparsity-factor", type=int, default=2)
    p.add_argument("--sparsity-type", default="norm")
    p.add_argument("--num-global-tokens", type=int, default=1)
    p.add_argument("--no-pool-with-global", dest="pool_with_global", action="store_false")
    p.add_argument("--no-mask-first-token", dest="mask_first_token", action="store_false")
    p.add_argument("--no-pass-global-tokens-to-decoder", dest="pass_global_tokens_to_decoder", action="store_false")
    p.add_argument("--trust-remote-code", action="store_true", help="run code shipped with the checkpoint (off by default)")
    args = p.parse_args(argv)
    knobs = {k: getattr(args, k) for k in ("block_size", "sparse_block_size", "sparsity_factor", "sparsity_type",
                                           "num_global_tokens", "pool_with_global", "mask_first_token",
                                           "pass_global_tokens_to_decoder")}
    try:
        out = convert(args.pretrained, args.out, args.max_length, knobs, args.head, args.num_labels,
                      args.trust_remote_code)
    except (ConfigError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote an LSG model ({args.max_length} tokens, {knobs}) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
