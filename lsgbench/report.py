"""Comparison tables and plots from run records.

    python -m lsgbench.report [PATHS...] [--by task,model,attention,max_length] [--metric accuracy,...]
                              [--format md,csv,tex] [--out DIR]

Reads every run record (schema 1) under PATHS (default: the store, `store_dir` of
conf/paths/default.yaml: $LSGBENCH_STORE or results/runs), groups runs that differ
only by seed, and prints one row per configuration: the task metrics as mean ± std over seeds with
the number of seeds, the published score of that task and model from the task cards (with its
source) where one exists and the run fine-tunes a pretrained checkpoint, training and evaluation
tokens/s, peak training memory, max length and the run status. Failed and out-of-memory runs are rows too, never dropped. With --out, the tables
are written there as table.<format>, and the plots that the runs support as PNG files: metric
against LSG block size and sparsity factor, tokens/s and peak memory against length, and
quality against speed with the Pareto front. Benchmark results from `python -m lsgbench.bench`
render as one row per model, length and phase, with tokens/s- and memory-vs-length plots.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from collections import Counter
from pathlib import Path

from omegaconf import OmegaConf

from .config import shipped_dir
from .grouping import DIFFERS, Row, rows, run_label, stats
from .kinds import metric
from .measure import busy_note
from .plots import plot_bench, plot_records
from .record import RunRecord, bench_results, config_hash, json_documents, run_records
from .published import identity, published

BY_CHOICES = ("task", "model", "attention", "max_length", "eval_max_length")
FORMATS = ("md", "csv", "tex")
# The efficiency figures the table shows: (figure, column, digits).
EFFICIENCY = [("train_tokens_per_s", "train tok/s", 0), ("eval_tokens_per_s", "eval tok/s", 0),
              ("train_peak_mem_mb", "train MB", 0)]
ARROWS = {True: " ↑", False: " ↓", None: ""}  # a metric's header: higher or lower is better, or neither


def _header(name: str) -> str:
    return name + ARROWS[metric(name).higher_is_better]


def _cell(value, digits=2, seeds=1) -> str:
    if value is None:
        return "—"
    mean, std = value
    if math.isnan(mean):
        return "nan"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if seeds > 1 else f"{mean:.{digits}f}"


def _published(row: Row, metrics: list[str]) -> tuple[dict[str, str], str]:
    """The row's published scores by metric, and their sources as one cell; only beside runs that
    fine-tune a pretrained checkpoint (a random-init model, or one another run trained, reproduces no paper)."""
    if not str(row["model_init"] or "").startswith("pretrained"):
        return {}, ""
    refs = published(row["task"])
    model = identity(row["model"], row["attention_type"])
    found = {m: refs[(model, m)] for m in metrics if (model, m) in refs}
    sources = dict.fromkeys(f"{ref.paper_model}: {ref.source}" for ref in found.values())
    return {m: ref.score for m, ref in found.items()}, "; ".join(sources)


CAVEAT = "†"  # marks the status of a row whose figures carry a caveat (listed under the table)


def table(metrics: list[str], grouped: list[Row], by: list[str]) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, cells, notes) of the comparison table of `grouping.rows`; notes name the errors of failed
    rows, the caveats of rows marked †, speeds measured on a shared machine and the commits that made the runs."""
    scores = [_published(row, metrics) for row in grouped]
    cited = [m for m in metrics if any(m in found for found, _ in scores)]
    by = by + ([DIFFERS] if any(DIFFERS in row["columns"] for row in grouped) else [])
    header = by + [_header(m) for m in metrics] + ["n eval"] + \
        [f"published {m}" for m in cited] + (["published source"] if cited else []) + \
        [name for _, name, _ in EFFICIENCY] + ([] if "max_length" in by else ["max_length"]) + ["runs", "status"]
    cells = []
    for row, (found, source) in zip(grouped, scores):
        cells.append([str(row["columns"].get(b, "")) for b in by] +
                     [_cell(row["metrics"][m], metric(m).digits, row["seeds"]) for m in metrics] +
                     ["—" if row["n_eval"] is None else str(row["n_eval"])] +
                     [found.get(m, "—") for m in cited] + ([source or "—"] if cited else []) +
                     [_cell(row["efficiency"].get(f), d, row["seeds"]) for f, _, d in EFFICIENCY] +
                     ([] if "max_length" in by else [str(row["max_length"])]) +
                     [row["runs"], row["status"] + (f" {CAVEAT}" if row["caveats"] else "")])
    name = lambda r: " / ".join(str(v) for b in by if (v := r["columns"].get(b, "")) != "")  # noqa: E731
    notes = [f"{name(r)}: {r['status']}: {' '.join(r['error'].split())}"
             for r in grouped if r["status"] != "ok" and r["error"]]
    marked: dict[str, list[str]] = {}  # caveat -> the rows it concerns
    for r in grouped:
        for caveat in r["caveats"]:
            marked.setdefault(caveat, []).append(name(r))
    notes += [f"{CAVEAT} {caveat}: {'; '.join(names)}" for caveat, names in marked.items()]
    for r in grouped:
        if busy := busy_note({phase: (r["efficiency"].get(f"{phase}_busy_elsewhere") or (None,))[0]
                              for phase in ("train", "eval")}):
            notes.append(f"{name(r)}: {busy}")
    notes.append(_commits([c for r in grouped for c in r["commits"]]))
    return header, cells, notes


def _commits(commits: list[str | None], unit: str = "run") -> str:
    """A note naming the lsgbench commits that made a table's runs or rows (how many each)."""
    counts = Counter(c[:7] + ("+dirty" if c.endswith("+dirty") else "") if c else "unknown" for c in commits)
    return "made by lsgbench commit " + ", ".join(f"{c} ({n} {unit}{'s' if n > 1 else ''})" for c, n in counts.items())


def refused(records: list[RunRecord]) -> list[RunRecord]:
    """The runs refused before training (status invalid) of configurations that never ran (a configuration
    that ran has its row), the latest per configuration."""
    key = lambda r: config_hash(r["config"]) if r.get("config") else r["run_id"]  # noqa: E731
    ran = {key(r) for r in records if r["status"] != "invalid"}
    latest = {key(r): r for r in sorted(records, key=lambda r: r["run_id"]) if r["status"] == "invalid"}
    return [r for k, r in latest.items() if k not in ran]


def refused_notes(records: list[RunRecord]) -> list[str]:
    return [f"refused before training (invalid), {r['run_id']}: {' '.join(r.get('overrides') or []) or 'no overrides'}:"
            f" {' '.join((r['error'] or '').split())}" for r in records]


TEX_SYMBOLS = {"±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "—": "--", CAVEAT: r"$^\dagger$"}
TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
               "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex(text: str) -> str:
    escaped = "".join(TEX_SPECIAL.get(ch, ch) for ch in text)
    for symbol, tex in TEX_SYMBOLS.items():
        escaped = escaped.replace(symbol, tex)
    return escaped


def format_table(header: list[str], cells: list[list[str]], fmt: str, notes: list[str] = ()) -> str:
    """md (a pipe table, notes as a list), csv, or tex (a booktabs tabular, notes as comments); the notes
    alone when there is no table (no header). CSV cells parse as numbers: "mean ± std" becomes two columns,
    "—" an empty cell, and the header drops the ↑/↓ of a metric (which way is better); CSV has no notes."""
    if not header:
        return "" if fmt == "csv" else "\n".join(f"% {_tex(n)}" if fmt == "tex" else f"- {n}" for n in notes) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        csv.writer(buf).writerows(_plain_columns(header, cells))
        return buf.getvalue()
    if fmt == "tex":
        align = "".join("r" if all(_numeric(row[i]) for row in cells) else "l" for i in range(len(header)))
        out = [rf"\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(map(_tex, header)) + r" \\", r"\midrule"]
        out += [" & ".join(map(_tex, row)) + r" \\" for row in cells]
        out += [r"\bottomrule", r"\end{tabular}"] + [f"% {_tex(note)}" for note in notes]
        return "\n".join(out) + "\n"
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells]
    if notes:
        out += [""] + [f"- {note}" for note in notes]
    return "\n".join(out) + "\n"


def _plain_columns(header: list[str], cells: list[list[str]]) -> list[list[str]]:
    columns = []
    for i, name in enumerate(header):
        values = [row[i] for row in cells]
        name = name.removesuffix(" ↑").removesuffix(" ↓")
        if any(" ± " in v for v in values):
            columns.append([name] + [v.split(" ± ")[0].replace("—", "") for v in values])
            columns.append([f"{name} std"] + [v.split(" ± ")[1] if " ± " in v else "" for v in values])
        else:
            columns.append([name] + ["" if v == "—" else v for v in values])
    return [list(row) for row in zip(*columns)]


def _numeric(cell: str) -> bool:
    try:
        float(cell.split(" ± ")[0])
        return True
    except ValueError:
        return cell == "—"


def bench_rows(documents) -> list[dict]:
    """The rows of benchmark results (`python -m lsgbench.bench`) among JSON documents, with their device."""
    return [{**row, "device": result["device"], "commit": (result.get("env") or {}).get("git_commit")}
            for result in bench_results(documents) for row in result["rows"]]


def bench_table(rows: list[dict]) -> tuple[list[str], list[list[str]], list[str]]:
    """One line per (device, model, attention, head, length, phase): step time, tokens/s, peak memory, the
    counted FLOPs and bytes saved for backward per token (— where not counted), the MFU (the achieved FLOP/s over
    the dense matmul rate measured in the same run), for decoder generation the time to the first token, the
    decoding rate and the KV cache, status; and notes on rows measured on a shared machine."""
    generation = any("time_to_first_token_s" in r for r in rows)
    header = ["device", "model", "attention", "size", "dtype", "mode", "head", "seq_len", "batch", "phase", "step ms",
              "tok/s", "peak MB", "ops", "MFLOP/tok", "saved KB/tok", "MFU %",
              *(["first token ms", "decode tok/s", "KV cache MB"] if generation else []), "status"]

    def figure(row, key, scale, digits):
        return "—" if row.get(key) is None else f"{row[key] / scale:.{digits}f}"

    cells = []
    for r in rows:
        decoding = [figure(r, "time_to_first_token_s", 1e-3, 1), figure(r, "decode_tokens_per_s", 1, 0),
                    figure(r, "kv_cache_mb", 1, 2)] if generation else []
        cells.append([r["device"], r["model"], r.get("attention", "?"), r["size"], r["dtype"], r["bench_mode"],
                      r.get("head") or "—", str(r["seq_len"]), str(r["batch"]), r["phase"], figure(r, "step_s", 1e-3, 1),
                      figure(r, "tokens_per_s", 1, 0), figure(r, "peak_mem_mb", 1, 0), figure(r, "kernel_ops", 1, 0),
                      figure(r, "flops_per_token", 1e6, 2), figure(r, "saved_bytes_per_token", 1024, 1),
                      figure(r, "mfu", 0.01, 1), *decoding, r["status"]])
    notes = [f"{r['model']} {r.get('attention', '')} {r['seq_len']} {r['phase']}: {busy}" for r in rows
             if (busy := busy_note({"the timed steps": r.get("busy_elsewhere")}))]
    if any(r.get("kernel_ops") for r in rows):
        notes.append("ops: the kernel-launching operations one step dispatches (views aside; a compiled FlexAttention "
                     "call counts as one), the same on a CPU and a GPU, where each costs a launch")
    if any(r.get("counted_on") for r in rows):
        notes.append("FLOPs of FlexAttention steps are counted on the blocks kernel (the same attention; torch's "
                     "FLOP counter cannot run compiled flex); their saved bytes are not counted")
    if any("kv_cache_bounded" in r for r in rows):
        flat = dict.fromkeys(f"{r['model']} {r.get('attention', '')}".strip() for r in rows if r.get("kv_cache_bounded"))
        notes.append(f"KV caches bounded by a sliding window (flat in length): {', '.join(flat) or 'none'}; the other "
                     f"decoder-only generation rows keep every past token")
    notes.append(_commits([r.get("commit") for r in rows], "row"))
    return header, cells, notes


def pretraining_table(records: list[RunRecord]) -> tuple[list[str], list[list[str]], list[str]] | None:
    """Pretrain -> fine-tune: one row per pretraining run that ok fine-tuning runs name (provenance.pretrained_run)
    and fine-tuning setup (the length it trained and was evaluated at, what trained), its pretraining figures beside
    each fine-tuned task's first metric (mean ± std and the count over its runs of that task and setup); None
    without such runs. Only masked-LM runs count as pretraining, and runs that continue it are not fine-tuning."""
    by_id = {r["run_id"]: r for r in records}
    tuned = [r for r in records if r["status"] == "ok" and r["task_kind"] != "masked_lm"
             and by_id.get(r["provenance"].get("pretrained_run"), {}).get("task_kind") == "masked_lm"]
    if not tuned:
        return None

    def setup(run: RunRecord) -> tuple:
        return (run["max_length"], run.get("eval_max_length") or run["max_length"],
                (run["provenance"].get("trainable") or {}).get("choice", "all"))

    firsts = {r["task"]: next(iter(r["metrics"]), None) for r in tuned}
    pre_metrics = ["mlm_loss", "bits_per_token"]
    header = ["model", "attention", "max_length", "pretrained on", "steps", *map(_header, pre_metrics),
              "fine-tuned at", "trains", *[f"{task}: {_header(m)}" for task, m in sorted(firsts.items())]]
    cells = []
    for pre_id in dict.fromkeys(r["provenance"]["pretrained_run"] for r in sorted(tuned, key=lambda r: r["run_id"])):
        pre = by_id[pre_id]
        mine = [r for r in tuned if r["provenance"]["pretrained_run"] == pre_id]
        for length, evaluated, trains in dict.fromkeys(map(setup, mine)):
            row = [pre["model"], run_label(pre), str(pre["max_length"]), pre["task"],
                   str(pre["efficiency"].get("train_steps", "—")),
                   *[_cell((pre["metrics"][m], 0.0), metric(m).digits) if m in pre["metrics"] else "—"
                     for m in pre_metrics],
                   str(length) + (f" (evaluated at {evaluated})" if evaluated != length else ""), trains]
            for task, m in sorted(firsts.items()):
                values = [r["metrics"][m] for r in mine if r["task"] == task and setup(r) == (length, evaluated, trains)
                          and m in r["metrics"]]
                count = f" (n={len(values)})" if len(values) > 1 else ""
                row.append(_cell(stats(values), metric(m).digits, len(values)) + count if values else "—")
            cells.append(row)
    notes = ["each row: one masked-LM pretraining run (its figures on its corpus' evaluation split, lower is "
             "better) and the runs that fine-tuned the model it saved alike (the same lengths, the same parameters "
             "trained): mean ± std over n of them"]
    return header, cells, notes


def default_store() -> str:
    """The store the runs write to (`store_dir` of the paths config), so LSGBENCH_STORE counts here too."""
    return OmegaConf.load(shipped_dir("conf") / "paths" / "default.yaml").store_dir


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lsgbench.report", description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="*",
                   help="run records or folders of them (default: the store, $LSGBENCH_STORE or results/runs)")
    p.add_argument("--by", default="task,model,attention,max_length", help=f"columns that define a row, of {BY_CHOICES}")
    p.add_argument("--metric", default=None, help="metrics to show, e.g. accuracy,f1_macro (default: all recorded); "
                                                  "the first other than gen_len is the quality axis of the plots")
    p.add_argument("--format", default="md", help=f"one or more of {FORMATS}, e.g. md,csv,tex")
    p.add_argument("--out", default=None, help="write table.<format> files and plots here as well as printing")
    p.add_argument("--status", default=None, help="keep only runs with these statuses, e.g. ok or ok,oom "
                                                  "(default: all, failures included)")
    args = p.parse_args(argv)
    paths, by, formats = args.paths or [default_store()], args.by.split(","), args.format.split(",")
    if unknown := [b for b in by if b not in BY_CHOICES]:
        return _fail(f"--by {unknown} unknown; choose from {', '.join(BY_CHOICES)}")
    if unknown := [f for f in formats if f not in FORMATS]:
        return _fail(f"--format {unknown} unknown; choose from {', '.join(FORMATS)}")
    if missing := [path for path in paths if not Path(path).exists()]:
        return _fail(f"{missing} do not exist")
    unreadable = []
    documents = list(json_documents(paths, unreadable))
    records, benchmarks = run_records(documents), bench_rows(documents)
    if args.status:
        wanted = set(args.status.split(","))
        records = [r for r in records if r["status"] in wanted]
        benchmarks = [r for r in benchmarks if r["status"] in wanted]
    if not records and not benchmarks:
        return _fail(f"no run records or benchmark results under {paths}"
                     + (f" with status {args.status}" if args.status else ""))
    metrics = args.metric.split(",") if args.metric else None
    recorded = {m for r in records for m in r.get("metrics", {})}
    if metrics and (unknown := [m for m in metrics if m not in recorded]):
        return _fail(f"--metric {unknown} is not in the records; they have {sorted(recorded)}")
    invalid = refused(records)
    records = [r for r in records if r["status"] != "invalid"]
    if "eval_max_length" not in by and any(r.get("eval_max_length") not in (None, r["max_length"]) for r in records):
        by.append("eval_max_length")  # a run evaluated at another length than it trained at: a column, and its row
    tables = {}  # one table per task kind: their metrics differ; the runs it refused listed under it
    for kind in sorted({r["task_kind"] for r in records + invalid}):
        mine = [r for r in records if r["task_kind"] == kind]
        kind_metrics, grouped = rows(mine, by, metrics) if mine else ([], [])
        kind_metrics = [m for m in kind_metrics if any(g["metrics"].get(m) for g in grouped)] or kind_metrics
        header, cells, notes = table(kind_metrics, grouped, by) if mine else ([], [], [])
        notes += refused_notes([r for r in invalid if r["task_kind"] == kind])
        tables[kind] = (header, cells, notes, kind_metrics, grouped)
    if paired := pretraining_table(records):
        tables["pretrain_finetune"] = (*paired, None, None)
    if benchmarks:
        tables["bench"] = (*bench_table(benchmarks), None, None)
    out = Path(args.out) if args.out else None
    for kind, (header, cells, notes, *_) in tables.items():
        notes = notes + [f"unreadable record {path}: {reason}" for path, reason in unreadable]
        name = "table" if len(tables) == 1 else f"table_{kind}"
        for fmt in formats:
            text = format_table(header, cells, fmt, notes)
            print(text)
            if out:
                out.mkdir(parents=True, exist_ok=True)
                (out / f"{name}.{fmt}").write_text(text)
    if out:
        written = [path for _, _, _, kind_metrics, grouped in tables.values() if grouped is not None
                   for path in plot_records(kind_metrics, grouped, out,
                                            {m: metric(m).higher_is_better for m in kind_metrics})
                   ] + plot_bench(benchmarks, out)
        for path in written:
            print(f"plot: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
