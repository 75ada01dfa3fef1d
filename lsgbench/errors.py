"""The one exception type for mistakes a user can make in config or data, and the messages that name
a bad key or value and what is allowed."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping


class ConfigError(ValueError):
    """A bad config value or bad input data; the message names the value and what is allowed."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what SLURM, `timeout` and schedulers send), handled like Ctrl-C: the run under way writes an
    `interrupted` record with the figures so far."""


# ---------------------------------------------------------------- messages naming a bad key or value

LISTED = 30  # an error lists the keys of a group up to this many


def unknown_keys(node: Mapping, where: str, known: Iterable[str], what: str = "") -> list[str]:
    """A message for each key of `node` not in `known`: the key, where it is (`what` it holds there), the keys
    there (their count alone when there are many) and a close match."""
    if not isinstance(node, Mapping):
        return [f"{where}={node!r} must be a mapping of keys"]
    known = sorted(known)
    there = ", ".join(known) if len(known) <= LISTED else f"{len(known)} keys"
    problems = []
    for key in node:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {_join(where, close[0])}?" if close else ""
            problems.append(f"{_join(where, key)} is not a key lsgbench reads: {where or 'the top level'}"
                            f"{f' ({what})' if what else ''} has {there}{hint}")
    return problems


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else str(key)


def raise_all(problems: list[str]) -> None:
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} problems:\n" + "\n".join(f"- {p}" for p in problems))


# ---------------------------------------------------------------- numbers

def integer(name: str, value, minimum: int, optional: bool = False) -> list[str]:
    """[] when `value` is an integer >= minimum (or null when optional); else a message naming `name`."""
    if (value is None and optional) or (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
        return []
    return [f"{name}={value!r} must be an integer >= {minimum}{' or null' if optional else ''}"]


def number(name: str, value, above: float | None = None, below: float | None = None,
           at_least: float | None = None) -> list[str]:
    """[] when `value` is a finite number > `above`, < `below` and >= `at_least` (those given); else a message."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and \
        (above is None or value > above) and (below is None or value < below) and \
        (at_least is None or value >= at_least)
    if ok:
        return []
    bounds = [f"> {above}" if above is not None else "", f">= {at_least}" if at_least is not None else "",
              f"< {below}" if below is not None else ""]
    return [f"{name}={value!r} must be a number {' and '.join(b for b in bounds if b)}".rstrip()]


def choice(name: str, value, allowed) -> list[str]:
    """[] when `value` is one of `allowed`; else a message naming `name` and the choices."""
    return [] if value in allowed else [f"{name}={value!r} is unknown; choose one of {list(allowed)}"]
