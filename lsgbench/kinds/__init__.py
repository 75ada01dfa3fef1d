"""Task kinds: one module each (classification, summarization, question answering, multiple choice, masked and
causal language modelling), registered here by name."""

from __future__ import annotations

from ..errors import ConfigError
from .base import Metric, TaskKind
from .causal_lm import CausalLM
from .classification import Classification
from .masked_lm import MaskedLM
from .multiple_choice import MultipleChoice
from .question_answering import QuestionAnswering
from .summarization import Summarization

KINDS: dict[str, TaskKind] = {kind.name: kind for kind in (Classification(), Summarization(), QuestionAnswering(),
                                                          MultipleChoice(), MaskedLM(), CausalLM())}


def metric(name: str) -> Metric:
    """How a recorded metric reads (its direction and unit); a name no kind declares reads as neither."""
    return next((m for kind in KINDS.values() for m in kind.METRICS if m.name == name),
                Metric(name, higher_is_better=None, unit=""))


def task_kind(task) -> TaskKind:
    """The kind of a task config (`task.kind`)."""
    if task.kind not in KINDS:
        raise ConfigError(f"task.kind={task.kind!r} is unknown; choose one of {sorted(KINDS)}")
    return KINDS[task.kind]


__all__ = ["KINDS", "Metric", "TaskKind", "metric", "task_kind"]
