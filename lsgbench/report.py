"""Comparison tables from run records.

    python -m lsgbench.report [PATHS...] [--by task,model,attention,max_length] [--format md,csv] [--out DIR]

Reads every run record (schema 1) under PATHS (default: results/runs), groups runs that differ
only by seed, and prints one row per configuration (for benchmark results from
`python -m lsgbench.bench`, one row per model, length and phase): the task metrics as mean ± std over seeds with
the number of seeds, training and evaluation tokens/s, peak memory, and the run status. Failed and
out-of-memory runs are rows too, never dropped.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import statistics
import sys
from pathlib import Path

from .record import read_records

EFFICIENCY = [("train_tokens_per_s", "train tok/s", 0), ("eval_tokens_per_s", "eval tok/s", 0),
              ("train_peak_mem_mb", "train MB", 0)]
HIDDEN_KNOBS = {"type", "pool_with_global", "mask_first_token", "pass_global_tokens_to_decoder", "from_checkpoint",
                "combine_weight", "freeze_ssm", "s4d_init", "spade_layers"}
HIGHER_IS_BETTER = {"accuracy", "f1_macro", "f1_micro", "f1_binary", "rouge1", "rouge2", "rougeL", "rougeLsum"}


def attention_label(attention: dict) -> str:
    """A short, stable description of the attention knobs, e.g. `lsg b=64 s=64 f=4 pooling g=1`."""
    if not attention:
        return "?"
    kind = attention.get("type", "?")
    short = {"block_size": "b", "sparse_block_size": "s", "sparsity_factor": "f", "num_global_tokens": "g",
             "window": "w", "attention_window": "w", "num_random_blocks": "r", "state_size": "N"}
    unused = {"sliding": "block_size", "disjoint": "window"}.get(attention.get("mode"))  # local / spade
    parts = [kind]
    for key, value in attention.items():
        if key in HIDDEN_KNOBS or key == unused:
            continue
        if key == "runs_full_attention":
            parts.append("(full-attention fallback)")
            continue
        parts.append(f"{short[key]}={value}" if key in short else str(value))
    return " ".join(parts)


NOT_CONFIGURATION = ("seed", "store_dir", "cache_dir", "debug", "logger")  # runs differing only here are grouped


def _label(record: dict, by: list[str]) -> tuple:
    values = {"task": record["task"], "model": record["model"], "attention": attention_label(record["attention"]),
              "max_length": record["max_length"]}
    return tuple(values[b] for b in by)


def _configuration(record: dict) -> str:
    config = {k: v for k, v in (record.get("config") or {}).items() if k not in NOT_CONFIGURATION}
    return json.dumps(config, sort_keys=True, default=str)


def _overrides(record: dict) -> str:
    return " ".join(o for o in record.get("overrides", []) if not o.startswith(("seed=", "store_dir=", "cache_dir=")))


def _stats(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def rows(records: list[dict], by: list[str]) -> tuple[list[str], list[dict]]:
    """(metric names, one row per configuration) in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for r in sorted(records, key=lambda r: r["run_id"]):
        groups.setdefault((_label(r, by), _configuration(r)), []).append(r)
    labels = [label for label, _ in groups]
    metrics = list(dict.fromkeys(m for r in records for m in r.get("metrics", {})))
    out = []
    for (label, _), runs in groups.items():
        ok = [r for r in runs if r["status"] == "ok"]
        row = dict(zip(by, label))
        if labels.count(label) > 1:  # same columns, different configuration: say how they differ
            row[by[-1]] = f"{row[by[-1]]} ({_overrides(runs[0])})"
        row["runs"] = f"{len(ok)}/{len(runs)}"
        row["status"] = "ok" if len(ok) == len(runs) else ", ".join(sorted({r["status"] for r in runs if r["status"] != "ok"}))
        for m in metrics:
            vals = [r["metrics"][m] for r in ok if m in r["metrics"]]
            row[m] = _stats(vals) if vals else None
        for field, _, _ in EFFICIENCY:
            vals = [r["efficiency"][field] for r in ok if isinstance(r["efficiency"].get(field), (int, float))]
            row[field] = _stats(vals) if vals else None
        row["error"] = next((r["error"] for r in runs if r["error"]), None)
        out.append(row)
    return metrics, out


def _cell(value, digits=2, seeds=1) -> str:
    if value is None:
        return "—"
    mean, std = value
    if math.isnan(mean):
        return "nan"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if seeds > 1 else f"{mean:.{digits}f}"


def render(records: list[dict], by: list[str], fmt: str) -> str:
    metrics, table = rows(records, by)
    header = by + [f"{m} {'↑' if m in HIGHER_IS_BETTER else ''}".strip() for m in metrics] + \
        [name for _, name, _ in EFFICIENCY] + ["runs", "status"]
    lines = []
    for row in table:
        seeds = int(row["runs"].split("/")[0])
        cells = [str(row[b]) for b in by] + [_cell(row[m], 2, seeds) for m in metrics] + \
            [_cell(row[f], d, seeds) for f, _, d in EFFICIENCY] + [row["runs"], row["status"]]
        lines.append(cells)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(header)
        writer.writerows(lines)
        return buf.getvalue()
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c.replace("|", "/") for c in cells) + " |" for cells in lines]
    failed = [r for r in table if r["status"] != "ok" and r["error"]]
    if failed:
        out.append("")
        out += [f"- {' / '.join(str(r[b]) for b in by)}: {r['status']}: {r['error']}" for r in failed]
    return "\n".join(out) + "\n"


def read_bench(paths) -> list[dict]:
    """Rows of benchmark result files (`python -m lsgbench.bench`) under the given paths, with their device."""
    rows = []
    for p in map(Path, paths):
        for f in sorted(p.rglob("*.json")) if p.is_dir() else [p]:
            data = json.loads(f.read_text())
            if isinstance(data, dict) and data.get("kind") == "bench":
                rows += [{**row, "device": data["device"]} for row in data["rows"]]
    return rows


def render_bench(rows: list[dict], fmt: str) -> str:
    """One line per (device, model, attention, length, phase): step time, tokens/s, peak memory, status."""
    header = ["device", "model", "attention", "size", "dtype", "mode", "seq_len", "batch", "phase", "step ms",
              "tok/s", "peak MB", "status"]
    lines = []
    for r in rows:
        ok = r["status"] == "ok"
        lines.append([r["device"], r["model"], r.get("attention", "?"), r["size"], r["dtype"], r["bench_mode"],
                      str(r["seq_len"]), str(r["batch"]), r["phase"],
                      f"{r['step_s'] * 1000:.1f}" if ok else "—", f"{r['tokens_per_s']:.0f}" if ok else "—",
                      f"{r['peak_mem_mb']:.0f}" if ok else "—", r["status"]])
    if fmt == "csv":
        buf = io.StringIO()
        csv.writer(buf).writerows([header, *lines])
        return buf.getvalue()
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lsgbench.report", description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="*", default=["results/runs"], help="run records or folders of them")
    p.add_argument("--by", default="task,model,attention,max_length", help="columns that define a configuration")
    p.add_argument("--format", default="md", help="md, csv, or both as md,csv")
    p.add_argument("--out", default=None, help="write table.<format> files here as well as printing")
    args = p.parse_args(argv)
    by = args.by.split(",")
    unknown = [b for b in by if b not in ("task", "model", "attention", "max_length")]
    if unknown:
        print(f"error: --by {unknown} unknown; choose from task, model, attention, max_length", file=sys.stderr)
        return 2
    missing = [path for path in args.paths if not Path(path).exists()]
    if missing:
        print(f"error: {missing} do not exist", file=sys.stderr)
        return 2
    records, bench_rows = read_records(args.paths), read_bench(args.paths)
    if not records and not bench_rows:
        print(f"error: no run records or benchmark results under {args.paths}", file=sys.stderr)
        return 2
    for fmt in args.format.split(","):
        if fmt not in ("md", "csv"):
            print(f"error: --format {fmt!r} unknown; choose md or csv", file=sys.stderr)
            return 2
        text = render(records, by, fmt) if records else render_bench(bench_rows, fmt)
        print(text)
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / f"table.{fmt}").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
