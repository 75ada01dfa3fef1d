"""Tokenizers: the checkpoint's own, or a byte-level BPE trained on the task's text.

Random-init models need a tokenizer even where no pretrained one can be downloaded; a small
vocabulary trained on the task's training text also keeps tiny models tiny. Trained tokenizers
are cached by a key over the training text and the vocabulary size.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

from .errors import ConfigError

log = logging.getLogger(__name__)

TRAINER_VERSION = 1
# RoBERTa/BART ids: <s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4.
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
MAX_CHARS_PER_TEXT = 20_000  # enough text to learn a vocabulary; keeps training to seconds


def train_tokenizer(texts: list[str], vocab_size: int, cache_dir: str | Path | None):
    """A PreTrainedTokenizerFast (byte-level BPE, RoBERTa-style specials) trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 300:
        raise ConfigError(f"model.tokenizer_vocab_size={vocab_size} is too small; byte-level BPE needs at least 300")
    clipped = [t[:MAX_CHARS_PER_TEXT] for t in texts]
    digest = hashlib.sha256()
    for t in clipped:
        digest.update(t.encode())
    key = f"bpe{vocab_size}-v{TRAINER_VERSION}-{digest.hexdigest()[:16]}"
    path = Path(cache_dir) / "tokenizers" / key if cache_dir else None
    if path is not None and (path / "tokenizer.json").exists():
        return PreTrainedTokenizerFast.from_pretrained(str(path))

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(clipped, trainer=trainer)
    bpe.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", mask_token="<mask>", cls_token="<s>", sep_token="</s>",
    )
    if path is not None:
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tokenizer.save_pretrained(str(tmp))
        try:
            os.replace(tmp, path)
        except OSError:  # another process cached the same key first
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("trained a %d-token BPE tokenizer on %d texts", len(tokenizer), len(texts))
    return tokenizer
