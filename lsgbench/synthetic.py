"""Built-in synthetic long-range tasks: deterministic by seed, no network.

The generators write filler prose from a fixed pseudo-word vocabulary and hide the answer in
words planted far from the start of the document, so attention whose receptive field does not
reach them fails. Rows follow the unified local schema of their kind (classification, summarization,
extractive question answering).
"""

from __future__ import annotations

import inspect
import itertools
import random
import zlib

from omegaconf import OmegaConf

from .errors import ConfigError, integer, number, unknown_keys

# Pronounceable filler words ("bako", "demu", ...): in-vocabulary for any trained tokenizer,
# and never equal to a label or topic word.
_ONSETS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
FILLER_WORDS = tuple(a + b + c + d for a, b, c, d in itertools.product(_ONSETS, _VOWELS, _ONSETS[:6], _VOWELS))
TOPIC_WORDS = ("river", "garden", "engine", "castle", "forest", "harbor", "market", "temple")


def _split_seed(seed: int, split: str) -> int:
    return seed * 1_000_003 + zlib.crc32(split.encode())


def _sentences(rng: random.Random, words: list[str]) -> list[list[str]]:
    """Cut a word list into sentences of 6-14 words."""
    out, i = [], 0
    while i < len(words):
        n = rng.randint(6, 14)
        out.append(words[i : i + n])
        i += n
    return out


def keys_rows(split: str, n: int, *, label_names, doc_words: int, num_keys: int,
              num_distractors: int, key_start: float, seed: int) -> list[dict]:
    """Classification: the label's name is planted num_keys times in [key_start, 1] of the text."""
    if len(label_names) < 2:
        raise ConfigError(f"task.label_names={list(label_names)}: synth_keys needs at least 2 labels")
    if not 0 <= num_distractors < num_keys:
        raise ConfigError(
            f"task.synthetic.num_distractors={num_distractors} must be >= 0 and below "
            f"task.synthetic.num_keys={num_keys}, so the planted majority decides the label"
        )
    if not 0.0 <= key_start < 1.0:
        raise ConfigError(f"task.synthetic.key_start={key_start} must be in [0, 1)")
    lo = int(key_start * doc_words)
    if num_keys + num_distractors > doc_words - lo:
        raise ConfigError(
            f"task.synthetic: {num_keys} keys + {num_distractors} distractors do not fit in the "
            f"{doc_words - lo} words after key_start={key_start} (doc_words={doc_words})"
        )
    rng = random.Random(_split_seed(seed, split))
    rows = []
    for i in range(n):
        label = i % len(label_names)  # balanced classes
        words = [rng.choice(FILLER_WORDS) for _ in range(doc_words)]
        spots = rng.sample(range(lo, doc_words), num_keys + num_distractors)
        others = [name for j, name in enumerate(label_names) if j != label]
        for k, pos in enumerate(spots):
            words[pos] = label_names[label] if k < num_keys else rng.choice(others)
        text = "\n".join(" ".join(s) + " ." for s in _sentences(rng, words))
        rows.append({"id": f"synth_keys-{split}-{i}", "text": text, "label": label_names[label]})
    rng.shuffle(rows)
    return rows


def extract_rows(split: str, n: int, *, doc_sentences: int, num_selected: int, num_topics: int,
                 key_start: float, seed: int) -> list[dict]:
    """Summarization: the abstract is the sentences that mention the topic named up front."""
    if not 2 <= num_topics <= len(TOPIC_WORDS):
        raise ConfigError(f"task.synthetic.num_topics={num_topics} must be in [2, {len(TOPIC_WORDS)}]")
    if not 0.0 <= key_start < 1.0:
        raise ConfigError(f"task.synthetic.key_start={key_start} must be in [0, 1)")
    lo = int(key_start * doc_sentences)
    if not 1 <= num_selected <= doc_sentences - lo:
        raise ConfigError(
            f"task.synthetic.num_selected={num_selected} must be in [1, {doc_sentences - lo}] "
            f"(the sentences after key_start={key_start} of doc_sentences={doc_sentences})"
        )
    topics = TOPIC_WORDS[:num_topics]
    rng = random.Random(_split_seed(seed, split))
    rows = []
    for i in range(n):
        topic = rng.choice(topics)
        distractors = [t for t in topics if t != topic]
        sentences = [[rng.choice(FILLER_WORDS) for _ in range(rng.randint(6, 12))] for _ in range(doc_sentences)]
        selected = sorted(rng.sample(range(lo, doc_sentences), num_selected))
        for j, sentence in enumerate(sentences):
            word = topic if j in selected else rng.choice(distractors)
            sentence.insert(rng.randrange(len(sentence) + 1), word)
        lines = [" ".join(s) + " ." for s in sentences]
        rows.append({
            "id": f"synth_extract-{split}-{i}",
            "article": "\n".join([f"the topic is {topic} ."] + lines),
            "abstract": "\n".join(lines[j] for j in selected),
        })
    return rows


# Whose codes a document holds: a name's code is one of its first four words and one of its last four, so a
# code's words say whose it is. Which planted code answers depends on the question's name alone, a lookup one
# attention hop away (from the code to the question), and a code's first and last words are told apart by the
# words themselves, not their order.
CODES = {
    "falcon": ("red", "green", "blue", "amber", "violet", "silver", "golden", "black"),
    "otter": ("lantern", "anchor", "mirror", "compass", "ladder", "kettle", "drum", "bell"),
    "lynx": ("apple", "pear", "plum", "cherry", "lemon", "melon", "grape", "peach"),
    "heron": ("iron", "copper", "tin", "zinc", "nickel", "chrome", "bronze", "brass"),
    "bison": ("oak", "elm", "ash", "pine", "birch", "maple", "cedar", "willow"),
    "viper": ("one", "two", "three", "four", "five", "six", "seven", "eight"),
    "marten": ("rain", "snow", "hail", "frost", "mist", "storm", "wind", "sun"),
    "osprey": ("flute", "harp", "violin", "cello", "oboe", "horn", "piano", "organ"),
}
NAMES = tuple(CODES)


def span_rows(split: str, n: int, *, doc_words: int, num_facts: int, key_start: float, seed: int) -> list[dict]:
    """Extractive QA: `num_facts` sentences "the code is <word> <word> ." are planted in [key_start, 1] of the
    text, each a code of another name (made of that name's words, `CODES`); the question asks one name's code,
    and the answer is its two words. The other codes are distractors: only the question says which answers it.
    The facts do not name their owner: a name in the fact too would let a code match its own name nearby
    instead of the question's, and a tiny model then learns neither (measured: tasks/synth_qa/README.md)."""
    if not 1 <= num_facts <= len(NAMES):
        raise ConfigError(f"task.synthetic.num_facts={num_facts} must be in [1, {len(NAMES)}]")
    if not 0.0 <= key_start < 1.0:
        raise ConfigError(f"task.synthetic.key_start={key_start} must be in [0, 1)")
    lo = int(key_start * doc_words)
    if num_facts > doc_words - lo:
        raise ConfigError(f"task.synthetic: {num_facts} facts do not fit in the {doc_words - lo} words after "
                          f"key_start={key_start} (doc_words={doc_words})")
    rng = random.Random(_split_seed(seed, split))
    rows = []
    for i in range(n):
        words = [rng.choice(FILLER_WORDS) for _ in range(doc_words)]
        names = rng.sample(NAMES, num_facts)
        facts = {name: f"{rng.choice(CODES[name][:4])} {rng.choice(CODES[name][4:])}" for name in names}
        for pos, name in sorted(zip(rng.sample(range(lo, doc_words), num_facts), names), reverse=True):
            words[pos:pos] = f". the code is {facts[name]} .".split()  # after the later ones first
        context = " ".join(words)
        asked = names[i % num_facts]
        start = context.index(f" is {facts[asked]} .") + len(" is ")
        rows.append({"id": f"synth_span-{split}-{i}", "question": f"what is the code of {asked} ?", "context": context,
                     "answers": {"text": [facts[asked]], "answer_start": [start]}})
    return rows


GENERATORS = {"keys": keys_rows, "extract": extract_rows, "spans": span_rows}


def check_knobs(task) -> list[str]:
    """What is wrong with `task.synthetic`: the generator's name, its knobs (its keyword arguments, each
    needed) and the split sizes `n_<split>` (0: no such split)."""
    knobs = task.synthetic
    if not OmegaConf.is_dict(knobs):
        return [f"task.synthetic={knobs!r} must be a mapping: the generator and its knobs"]
    name = knobs.get("generator")
    if name not in GENERATORS:
        return [f"task.synthetic.generator={name!r} is unknown; choose one of {sorted(GENERATORS)}"]
    params = [p for p in inspect.signature(GENERATORS[name]).parameters.values()
              if p.kind == p.KEYWORD_ONLY and p.name != "label_names"]  # label_names: the task's
    sizes = [f"n_{split}" for split in task.splits or {}]
    problems = unknown_keys(knobs, "task.synthetic", ["generator", *(p.name for p in params), *sizes],
                            f"the {name!r} generator")
    problems += [f"task.synthetic.{p.name} is needed by the {name!r} generator" for p in params if p.name not in knobs]
    for key in [k for k in sizes if k in knobs]:
        problems += integer(f"task.synthetic.{key}", knobs[key], 0)
    for p in (p for p in params if p.name in knobs):
        value, key = knobs[p.name], f"task.synthetic.{p.name}"
        problems += integer(key, value, 0) if p.annotation == "int" else \
            number(key, value) if p.annotation == "float" else []
    return problems


def synthetic_rows(task, split: str, n: int) -> list[dict]:
    """Rows of one split of a synthetic task, from its `task.synthetic` knobs (checked by `check_knobs`)."""
    knobs = {k: v for k, v in task.synthetic.items() if k != "generator" and not k.startswith("n_")}
    if task.synthetic.generator == "keys":
        knobs["label_names"] = list(task.label_names)
    return GENERATORS[task.synthetic.generator](split, n, **knobs)
