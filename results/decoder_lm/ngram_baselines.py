"""What a model of the WikiText sample learns without context, for scale: the perplexity of the test articles'
tokens under add-one unigram and interpolated bigram (0.7 bigram + 0.3 unigram) counts from the training articles,
with the tokenizer the study's runs trained (every token and end-of-document predicted, as causal_lm does).

    python results/decoder_lm/ngram_baselines.py TOKENIZER_DIR DATA_DIR OUT.md
"""

import collections
import json
import math
import sys
from pathlib import Path

from transformers import PreTrainedTokenizerFast


def stream(tokenizer, path: Path) -> list[int]:
    ids = []
    for line in path.read_text().splitlines():
        ids += tokenizer(json.loads(line)["text"], add_special_tokens=False, verbose=False)["input_ids"]
        ids.append(tokenizer.eos_token_id)
    return ids


def main(tokenizer_dir: str, data_dir: str, out: str) -> None:
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir)
    train, test = (stream(tokenizer, Path(data_dir) / f"{split}.jsonl") for split in ("train", "test"))
    unigrams, bigrams, n, vocab = collections.Counter(train), collections.Counter(zip(train, train[1:])), len(train), \
        len(tokenizer)

    def unigram(t):
        return (unigrams[t] + 1) / (n + vocab)

    uni = math.exp(-sum(math.log(unigram(t)) for t in test) / len(test))
    bi = math.exp(-sum(math.log(0.7 * bigrams[(p, t)] / max(unigrams[p], 1) + 0.3 * unigram(t))
                       for p, t in zip(test, test[1:])) / (len(test) - 1))
    Path(out).write_text(f"| baseline | test perplexity |\n|---|---|\n| add-one unigram | {uni:.1f} |\n"
                         f"| interpolated bigram (0.7 / 0.3) | {bi:.1f} |\n\n{len(train)} training and {len(test)} test "
                         f"tokens, vocabulary {vocab}.\n")
    print(Path(out).read_text())


if __name__ == "__main__":
    main(*sys.argv[1:])
