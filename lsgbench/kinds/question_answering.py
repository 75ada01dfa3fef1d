"""Extractive question answering: a span of the context answers the question; exact match and token F1.

Rows are SQuAD's layout: {"id", "question", "context", "answers": {"text": [...], "answer_start": [...]}}.
The question comes first and is never cut. A context longer than the input is read in overlapping
windows that share `task.doc_stride` tokens (Hugging Face's run_qa convention), and the best span over all
windows wins; `task.doc_stride: null` reads one window and cuts the rest. A long model whose input holds the
whole context reads it in one window either way. Spans are chosen among the `task.n_best` highest start
and end logits, at most `task.max_answer_length` tokens long, and mapped back to the context's characters
through the tokenizer's offsets. Training targets the first gold answer; a window without it targets the
first token (no answer there), as run_qa does.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from ..errors import ConfigError, integer
from ..metrics import qa_metrics
from .base import Metric, TaskKind, check_room

OUTSIDE = [-1, -1]  # the offsets of a token outside the context (question, special tokens)
BENCH_QUESTION = 16  # the question's tokens in a benchmark's batches of random ids


class QuestionAnswering(TaskKind):
    name = "question_answering"
    text_column, target_column = "context", "answers"
    METRICS = (Metric("exact_match"), Metric("f1"))
    TARGETS = ("start_positions", "end_positions")

    def pair_column(self, task):
        return "question"

    def check(self, task):
        return (integer("task.n_best", task.n_best, 1) + integer("task.max_answer_length", task.max_answer_length, 1)
                + integer("task.doc_stride", task.doc_stride, 0, optional=True))

    def target(self, value, task, where, example_id, row=None):
        """The answers, checked against the context: every text at its answer_start."""
        def bad(why: str) -> ConfigError:
            return ConfigError(f"{where}: example {example_id!r} {why}")

        if not isinstance(value, dict) or not isinstance(value.get("text"), list) \
                or not isinstance(value.get("answer_start"), list) or len(value["text"]) != len(value["answer_start"]):
            raise bad(f"has answers {value!r}; they must be {{'text': [str, ...], 'answer_start': [int, ...]}} "
                      f"with one start per text")
        if not value["text"] and not task.unanswerable:
            raise bad("has no answer; a task whose questions may have none sets task.unanswerable=true")
        context = row[self.text_column]
        for text, start in zip(value["text"], value["answer_start"]):
            if not isinstance(text, str) or not text.strip():
                raise bad(f"has an empty answer text {text!r}")
            if not isinstance(start, int) or isinstance(start, bool) or not 0 <= start <= len(context) - len(text):
                raise bad(f"has answer_start={start!r} for {text!r}, outside its {len(context)}-character context")
            if context[start:start + len(text)] != text:
                raise bad(f"has answer {text!r} at answer_start={start}, where the context reads "
                          f"{context[start:start + len(text)]!r}")
        return {"text": list(value["text"]), "answer_start": list(value["answer_start"])}

    # ------------------------------------------------------------------ features and batches
    def encoding(self, task):
        return {"doc_stride": task.doc_stride, "max_answer_length": task.max_answer_length}

    def encode(self, rows, tokenizer, task, max_length):
        """One feature per window: input_ids, attention_mask, the context offsets of each token (OUTSIDE for
        the others), example_index, question_length (the tokens before the context: Longformer's global
        attention), the training span, whether the window holds the first answer, whether a prediction could
        be a gold answer there (one wholly in the window and at most task.max_answer_length tokens long; a
        question without an answer is answered by the empty span anywhere), input_length."""
        questions, contexts = self.inputs(rows, task)
        check_room(tokenizer, questions, rows, "question", max_length)
        stride, windows = task.doc_stride, task.doc_stride is not None
        if windows:
            self._check_stride(tokenizer, questions, rows, stride, max_length)
        enc = tokenizer(questions, contexts, truncation="only_second", max_length=max_length, stride=stride or 0,
                        return_overflowing_tokens=windows, return_offsets_mapping=True)
        examples = enc["overflow_to_sample_mapping"] if windows else range(len(rows))
        full = [len(ids) for ids in tokenizer(questions, contexts, verbose=False)["input_ids"]]
        features = defaultdict(list)
        for i, example in enumerate(examples):
            sequence = enc.sequence_ids(i)
            offsets = [list(o) if s == 1 else OUTSIDE for o, s in zip(enc["offset_mapping"][i], sequence)]
            start, end = _token_span(offsets, rows[example][self.target_column])
            features["input_ids"].append(enc["input_ids"][i])
            features["attention_mask"].append(enc["attention_mask"][i])
            features["offset_mapping"].append(offsets)
            features["example_index"].append(example)
            features["question_length"].append(sequence.index(1))
            features["start_positions"].append(start)
            features["end_positions"].append(end)
            features["answer_in_window"].append(end > 0)
            features["answer_reachable"].append(_reachable(offsets, rows[example][self.target_column],
                                                           task.max_answer_length))
            # windows read the whole context; one window reads what fits
            features["input_length"].append(len(enc["input_ids"][i]) if windows else full[example])
        return dict(features)

    @staticmethod
    def _check_stride(tokenizer, questions, rows, stride, max_length):
        """The windows' shared tokens must leave each window something new to read."""
        room = max_length - tokenizer.num_special_tokens_to_add(pair=True)
        for row, ids in zip(rows, tokenizer(questions, add_special_tokens=False, verbose=False)["input_ids"]):
            if stride >= room - len(ids):
                raise ConfigError(f"task.doc_stride={stride} is not below the {room - len(ids)} context tokens a "
                                  f"window of example {row['id']!r} holds (input length {max_length}); lower it")

    def collate_targets(self, features):
        return {t: torch.tensor([f[t] for f in features], dtype=torch.long) for t in self.TARGETS}

    def global_mask(self, batch, features):
        """Longformer's global attention for QA: on the question (and the tokens before the context)."""
        mask = torch.zeros_like(batch["input_ids"])
        lengths = [f["question_length"] for f in features] or [BENCH_QUESTION] * len(mask)
        for row, n in zip(mask, lengths):
            row[:n] = 1
        return mask

    def truncation(self, ds, max_length, task):
        """Per example (its first window): how many contexts the input length cut (one window only); how many
        examples none of whose windows holds the first answer (`answers_cut`); how many no prediction can
        answer right (`answers_unreachable`: every gold answer is outside every window or longer than
        task.max_answer_length tokens, so exact match cannot reach 100); the windows read per context."""
        first, held, reachable, windows = {}, defaultdict(bool), defaultdict(bool), defaultdict(int)
        for i, (example, inside, reach) in enumerate(zip(ds["example_index"], ds["answer_in_window"],
                                                         ds["answer_reachable"])):
            first.setdefault(example, i)
            held[example] |= inside
            reachable[example] |= reach
            windows[example] += 1
        out = super().truncation(ds.select(list(first.values())), max_length, task)
        out["answers_cut"] = sum(not inside for inside in held.values())
        out["answers_unreachable"] = sum(not reach for reach in reachable.values())
        out["windows_per_context_mean"] = sum(windows.values()) / max(len(windows), 1)
        out["windows_per_context_max"] = max(windows.values(), default=0)
        return out

    def bench_targets(self, batch, length, vocab, new_tokens, device):
        start = torch.randint(1, length, (batch,), device=device)
        return {"start_positions": start, "end_positions": torch.clamp(start + 3, max=length - 1)}

    # ------------------------------------------------------------------ model
    def random_config(self, task, tokenizer):
        return {"num_labels": 2}  # a start and an end logit per token

    def pretrained_config(self, config, task, checkpoint):
        config.num_labels = 2
        return {}

    # ------------------------------------------------------------------ evaluation
    def predict(self, model, batch, tokenizer):
        out = model(**batch)
        return list(zip(out.start_logits.float().cpu().tolist(), out.end_logits.float().cpu().tolist())), 0

    def predictions(self, outputs, eval_ds, rows, task):
        """Each example's answer: the best-scoring valid span (start + end logit) over all its windows, as
        context text; no span, or with task.unanswerable a better score for no answer: the empty answer."""
        best: dict[int, tuple[float, str]] = {}
        no_answer: dict[int, float] = {}
        for (starts, ends), offsets, example in zip(outputs, eval_ds["offset_mapping"], eval_ds["example_index"]):
            context = rows[example][self.text_column]
            no_answer[example] = min(no_answer.get(example, float("inf")), starts[0] + ends[0])
            for s in _top(starts[:len(offsets)], task.n_best):  # the logits of padding aside
                for e in _top(ends[:len(offsets)], task.n_best):
                    if offsets[s] == OUTSIDE or offsets[e] == OUTSIDE or not 0 <= e - s < task.max_answer_length:
                        continue
                    score = starts[s] + ends[e]
                    if score > best.get(example, (float("-inf"),))[0]:
                        best[example] = (score, context[offsets[s][0]:offsets[e][1]].strip())
        answers = []
        for example in range(len(rows)):
            score, text = best.get(example, (float("-inf"), ""))
            answers.append("" if task.unanswerable and no_answer[example] > score else text)
        return answers

    def metrics(self, predictions, targets, generated_tokens, task):
        return qa_metrics(predictions, [t["text"] for t in targets])

    def readable(self, values, task):
        return [v["text"] if isinstance(v, dict) else v for v in values]


def _top(logits: list[float], n: int) -> list[int]:
    return sorted(range(len(logits)), key=logits.__getitem__, reverse=True)[:n]


def _reachable(offsets: list[list[int]], answers: dict, max_answer_length: int) -> bool:
    """Whether a span predicted in this window can be a gold answer: one wholly in it and at most
    max_answer_length tokens long (a question without an answer: always)."""
    if not answers["text"]:
        return True
    spans = (_token_span(offsets, answers, k) for k in range(len(answers["text"])))
    return any(end > 0 and end - start < max_answer_length for start, end in spans)


def _token_span(offsets: list[list[int]], answers: dict, k: int = 0) -> tuple[int, int]:
    """The tokens of answer k (the first: the training target) in a window ((0, 0): not wholly in it, or no
    answer)."""
    if not answers["text"]:
        return 0, 0
    first, last = answers["answer_start"][k], answers["answer_start"][k] + len(answers["text"][k])
    inside = [i for i, o in enumerate(offsets) if o != OUTSIDE]
    if not inside or offsets[inside[0]][0] > first or offsets[inside[-1]][1] < last:
        return 0, 0
    start = max(i for i in inside if offsets[i][0] <= first)
    end = min(i for i in inside if offsets[i][1] >= last)
    return start, end
