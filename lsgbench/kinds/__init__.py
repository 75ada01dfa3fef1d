"""Task kinds: one module each (classification, summarization), registered here by name."""

from __future__ import annotations

from ..errors import ConfigError
from .base import TaskKind
from .classification import Classification
from .summarization import Summarization

KINDS: dict[str, TaskKind] = {kind.name: kind for kind in (Classification(), Summarization())}


def task_kind(task) -> TaskKind:
    """The kind of a task config (`task.kind`)."""
    if task.kind not in KINDS:
        raise ConfigError(f"task.kind={task.kind!r} is unknown; choose one of {sorted(KINDS)}")
    return KINDS[task.kind]


__all__ = ["KINDS", "TaskKind", "task_kind"]
