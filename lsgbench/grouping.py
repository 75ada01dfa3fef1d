"""Run records grouped into comparison rows: one row per configuration, its runs differing only by
seed, each figure as (mean, std) over the seeds that ran ok. The report tabulates the rows and
plots them; a row carries all either needs, so neither reads the records again."""

from __future__ import annotations

import statistics
from typing import TypedDict

from .attention import attention_label, kernel_caveat, labelled_knobs
from .record import RunRecord, caveats, config_hash

Stat = tuple[float, float]  # (mean, std) over seeds
DIFFERS = "differs by"      # the column naming the overrides that tell rows with equal labels apart


class Row(TypedDict):
    columns: dict             # the --by values that name the row; the last also says how it differs from its namesakes
    differs: str | None       # that difference (the overrides its namesakes lack), or None when its label is its own
    task: str
    model: str
    attention: str            # its label
    attention_type: str | None
    knobs: dict               # the attention knobs its label shows
    max_length: int | None
    sweep: str | None
    model_init: str | None    # pretrained:<checkpoint>, random:<size>, or run:<run_id> (a model another run saved)
    n_train: int | None       # training examples (provenance.n_train); with efficiency train_steps, the budget
    n_eval: int | None        # evaluation examples: what every metric is a mean over
    device: str | None        # what it trained on (efficiency.device)
    setup: str                # the config less seed and attention, hashed: rows that differ only in attention share it
    metrics: dict[str, Stat | None]
    efficiency: dict[str, Stat]  # every numeric figure of the ok runs
    seeds: int                # runs that ended ok
    runs: str                 # "<ok>/<all>"
    status: str               # ok, or the other statuses of its runs
    error: str | None         # the first error of its runs
    caveats: list[str]        # what a reader must know of its runs' figures (record.caveats, kernel_caveat)
    stale_kernel: bool        # a run measured before its attention kernel last changed (kernel_caveat)
    commits: list[str]        # the lsgbench commits its runs were made by (env.git_commit; None: unknown)


DROPPED_SHARE = 0.1  # evaluation inputs that lost more of their tokens than this to the input length are marked


def cut_caveats(record: RunRecord) -> list[str]:
    """What the input length took from a run's evaluation, for the report's marks (the summary has its own
    `truncated:` line): more than DROPPED_SHARE of the inputs' tokens, answers cut off, questions no span can
    answer right."""
    cut = (record["provenance"].get("truncation") or {}).get("eval") or {}
    n, out = cut.get("examples"), []
    if (cut.get("inputs_dropped_share") or 0) > DROPPED_SHARE:
        out.append(f"the evaluation inputs lost {cut['inputs_dropped_share']:.0%} of their tokens to the input length "
                   f"({cut['inputs_cut']} of {n} cut)")
    if cut.get("answers_unreachable"):
        out.append(f"{cut['answers_unreachable']} of {n} questions no span can answer right (gold answers outside "
                   f"the windows or longer than task.max_answer_length): exact match is at most "
                   f"{100 * (1 - cut['answers_unreachable'] / n):.1f}")
    elif cut.get("answers_cut"):
        out.append(f"{cut['answers_cut']} of {n} answers were cut off by the input length")
    return out


def run_label(record: RunRecord) -> str:
    """A run's attention label, and what it trained when not every parameter (trainer.trainable)."""
    trainable = (record["provenance"].get("trainable") or {}).get("choice", "all")
    return attention_label(record["attention"]) + ("" if trainable == "all" else f", trains {trainable}")


def _label(record: RunRecord, by: list[str]) -> tuple:
    values = {"task": record["task"], "model": record["model"], "attention": run_label(record),
              "max_length": record["max_length"], "eval_max_length": record.get("eval_max_length") or record["max_length"]}
    return tuple(values[b] for b in by)


def _overrides(record: RunRecord) -> set[str]:
    return {o for o in record.get("overrides", [])
            if not o.startswith(("seed=", "paths.", "store_dir=", "cache_dir=", "hydra."))}


def _difference(runs: list[RunRecord], others: list[list[RunRecord]], width: int = 90) -> str:
    """The overrides of `runs` that the other configurations with the same label lack (shortened)."""
    own = _overrides(runs[0])
    text = " ".join(sorted(own - set.intersection(*(_overrides(o[0]) for o in others)))) or "other defaults"
    return text if len(text) <= width else text[:width - 1] + "…"


def _seed(record: RunRecord):
    return (record.get("config") or {}).get("seed", record["provenance"].get("seed"))


def stats(values: list) -> Stat | None:
    """The stats of the numbers among `values` (a run may lack a figure); None without any."""
    numbers = [v for v in values if isinstance(v, (int, float))]
    if not numbers:
        return None
    return statistics.fmean(numbers), (statistics.stdev(numbers) if len(numbers) > 1 else 0.0)


def _init(record: RunRecord) -> str | None:
    """Where a run's weights came from: `run:<run_id>` for a model another run saved (whatever its own init was),
    else provenance.model_init (`pretrained:<checkpoint>`, `random:<size>`)."""
    prov = record["provenance"]
    return f"run:{prov['pretrained_run']}" if prov.get("pretrained_run") else prov.get("model_init")


def _setup(record: RunRecord) -> str:
    config = record.get("config") or {}
    model = {k: v for k, v in (config.get("model") or {}).items() if k != "attention"}
    return config_hash({**config, "model": model}, ignore=("seed",))


def rows(records: list[RunRecord], by: list[str], metrics: list[str] | None = None) -> tuple[list[str], list[Row]]:
    """(metric names, one row per configuration: by task, then in the order they first ran). Runs of
    one configuration differ only by seed; of two runs of one seed, the later counts."""
    groups: dict[tuple, list[RunRecord]] = {}
    for r in sorted(records, key=lambda r: (r["task"], r["run_id"])):
        groups.setdefault((_label(r, by), config_hash(r.get("config") or {}, ignore=("seed",))), []).append(r)
    same_label: dict[tuple, list[list[RunRecord]]] = {}
    for (label, _), runs in groups.items():
        same_label.setdefault(label, []).append(runs)
    metrics = metrics or list(dict.fromkeys(m for r in records for m in r.get("metrics", {})))
    out = []
    for (label, _), group in groups.items():
        columns = dict(zip(by, label))
        if len(same_label[label]) > 1:  # same columns, different configuration: say how they differ
            others = [o for o in same_label[label] if o is not group]
            columns[DIFFERS] = _difference(group, others)
        out.append(_row(group, columns, metrics))
    return metrics, out


def _row(group: list[RunRecord], columns: dict, metrics: list[str]) -> Row:
    runs = list({_seed(r): r for r in group}.values())  # a rerun of a seed (force=true) supersedes it
    ok = [r for r in runs if r["status"] == "ok"]
    first = runs[0]
    figures = dict.fromkeys(f for r in ok for f, v in r["efficiency"].items() if isinstance(v, (int, float)))
    return Row(columns=columns, differs=columns.get(DIFFERS), task=first["task"], model=first["model"], attention=run_label(first),
               attention_type=first["attention"].get("type"), knobs=labelled_knobs(first["attention"]),
               max_length=first["max_length"], sweep=first.get("sweep"),
               model_init=_init(first), n_train=first["provenance"].get("n_train"),
               device=next((r["efficiency"].get("device") for r in ok), None), setup=_setup(first),
               metrics={m: stats([r["metrics"].get(m) for r in ok]) for m in metrics},
               efficiency={f: stats([r["efficiency"].get(f) for r in ok]) for f in figures},
               n_eval=next((r["provenance"].get("n_eval") for r in ok), None),
               seeds=len(ok), runs=f"{len(ok)}/{len(runs)}",
               status="ok" if len(ok) == len(runs) else ", ".join(sorted({r["status"] for r in runs} - {"ok"})),
               error=next((r["error"] for r in runs if r["error"]), None),
               caveats=list(dict.fromkeys(c for r in ok for c in [*caveats(r), *cut_caveats(r), kernel_caveat(r)]
                                          if c)),
               stale_kernel=any(kernel_caveat(r) for r in ok),
               commits=list(dict.fromkeys(r.get("env", {}).get("git_commit") for r in runs)))
