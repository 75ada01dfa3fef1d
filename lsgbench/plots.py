"""PNG plots for the report: what a sweep's runs support, each written only when it has data. They
draw the comparison rows of `lsgbench.grouping` (each figure a (mean, std) pair) and benchmark rows.

- `lsg_grid_<task>.png`: the metric against LSG block size and against sparsity factor, over the
  largest set of LSG runs that differ only in attention knobs;
- `length_scaling.png`: training tokens/s and peak memory against max_length, a line per model and
  attention within one sweep;
- `quality_speed_<task>.png`: the metric against training tokens/s, Pareto front marked;
- `bench_<attention|model>_<size>_<dtype>_<device>.png`: benchmark tokens/s and peak memory against length.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (higher is better on both), by x."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1]))
    front, best_y = [], float("-inf")
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return sorted(front, key=lambda i: points[i][0])


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _mean(row: dict, figure: str) -> float | None:
    """The mean over seeds of an efficiency figure; None where the row has none."""
    stat = row["efficiency"].get(figure)
    return stat and stat[0]


def _ok(grouped: list[dict], metric: str | None = None) -> list[dict]:
    return [r for r in grouped if r["seeds"] and (metric is None or r["metrics"].get(metric))
            and "train_tokens_per_s" in r["efficiency"]]


def plot_records(metrics: list[str], grouped: list[dict], out: Path) -> list[Path]:
    """Per task, the quality axis is its first of `metrics` other than gen_len that its rows have."""
    written = []
    for task in dict.fromkeys(r["task"] for r in grouped):
        mine = [r for r in grouped if r["task"] == task]
        metric = next((m for m in metrics if m != "gen_len" and any(r["metrics"].get(m) for r in mine)), None)
        mine = _ok(mine, metric)
        if metric and len(mine) >= 2:
            written.append(quality_speed(mine, metric, out / f"quality_speed_{task}.png", task))
        lsg = _grid([r for r in mine if r["attention_type"] == "lsg"])
        if metric and max(len({_knob(r, k) for r in lsg}) for k in ("block_size", "sparsity_factor")) >= 2:
            written.append(lsg_grid(lsg, metric, out / f"lsg_grid_{task}.png", task))
    series = _sweep_series(_ok(grouped))
    if any(len(points) >= 2 for points in series.values()):
        written.append(length_scaling(series, out / "length_scaling.png"))
    return written


def _grid(grouped: list[dict]) -> list[dict]:
    """The largest set of rows that differ only in attention knobs (same data, model, budget, ...)."""
    sets: dict[str, list[dict]] = {}
    for row in grouped:
        sets.setdefault(row["setup"], []).append(row)
    return max(sets.values(), key=len, default=[])


def _knob(row: dict, name: str):
    return row["knobs"].get(name)


def _name(row: dict) -> str:
    return f"{row['model']} {row['attention']} @{row['max_length']}"


def quality_speed(grouped: list[dict], metric: str, path: Path, task: str) -> Path:
    points = [(_mean(r, "train_tokens_per_s"), r["metrics"][metric][0]) for r in grouped]
    front = pareto_front(points)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter(*zip(*points), color="tab:blue", zorder=2)
    for (x, y), row in zip(points, grouped):
        ax.annotate(_name(row), (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "--", color="tab:red", zorder=1,
            label="Pareto front")
    ax.scatter([points[i][0] for i in front], [points[i][1] for i in front], s=90, facecolors="none",
               edgecolors="tab:red", zorder=3)
    ax.set(xscale="log", xlabel="training tokens/s", ylabel=metric, title=f"{task}: quality vs speed")
    ax.legend(fontsize=8)
    return _save(fig, path)


def lsg_grid(grouped: list[dict], metric: str, path: Path, task: str) -> Path:
    """Two panels: the metric vs block size and vs sparsity factor, a line per setting of everything
    else (model, length, the other knobs; the legend names what differs); error bars: std over seeds."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, x_knob in ((axes[0], "block_size"), (axes[1], "sparsity_factor")):
        lines: dict[tuple, list[dict]] = {}
        for r in grouped:
            lines.setdefault(_setting(r, x_knob), []).append(r)
        varying = [i for i in range(len(next(iter(lines)))) if len({key[i] for key in lines}) > 1]
        for key, members in sorted(lines.items(), key=lambda kv: str(kv[0])):
            members.sort(key=lambda r: _knob(r, x_knob))
            ax.errorbar([_knob(r, x_knob) for r in members], [r["metrics"][metric][0] for r in members],
                        yerr=[r["metrics"][metric][1] for r in members], marker="o", capsize=3,
                        label=" ".join(f"{key[i][0]}={key[i][1]}" for i in varying) or None)
        ax.set(xlabel=x_knob.replace("_", " "), ylabel=metric)
        ax.set_xscale("log", base=2)
        if varying:
            ax.legend(fontsize=7)
    fig.suptitle(f"{task}: LSG knobs")
    return _save(fig, path)


def _setting(row: dict, x_knob: str) -> tuple:
    """What identifies a line of the grid plot: all but the x-axis knob, as (name, value) pairs."""
    knobs = {k: v for k, v in row["knobs"].items() if k != x_knob}
    return (("model", row["model"]), ("max_length", row["max_length"]), *sorted(knobs.items()))


def _sweep_series(grouped: list[dict]) -> dict[tuple, list[dict]]:
    """Lines of the length plot, keyed (task, sweep, model and attention): the runs of one sweep with
    the same model and attention (runs outside a sweep, or of different sweeps, may differ in anything)."""
    series: dict[tuple, list[dict]] = {}
    for row in grouped:
        if row["sweep"]:
            series.setdefault((row["task"], row["sweep"], f"{row['model']} {row['attention']}"), []).append(row)
    return {key: sorted(points, key=lambda r: r["max_length"]) for key, points in series.items()}


def length_scaling(series: dict[tuple, list[dict]], path: Path) -> Path:
    series = {key: points for key, points in series.items() if len(points) >= 2}
    shared = [len({key[i] for key in series}) == 1 for i in range(2)] + [False]  # name task, sweep if they differ
    lines = {" ".join(part for part, same in zip(key, shared) if not same):
             [(r["max_length"], _mean(r, "train_tokens_per_s"), _mean(r, "train_peak_mem_mb")) for r in points]
             for key, points in series.items()}
    title = " ".join(part for part, same in zip(next(iter(series)), shared) if same)
    return _scaling_figure(lines, title, "max_length (tokens)", "training tokens/s", "training peak memory (MB)", path)


def plot_bench(bench_rows: list[dict], out: Path) -> list[Path]:
    """One figure per kind of measurement (attention-only or whole model, size, dtype, device):
    tokens/s and peak memory against length, a line per model, attention and phase."""
    figures: dict[tuple, dict[str, list[dict]]] = {}
    for r in bench_rows:
        if r["status"] == "ok":
            kind = ("attention" if r["bench_mode"] == "attention" else "model", r["size"], r["dtype"], r["device"])
            line = f"{r['model']} {r.get('attention', '')} {r['phase']}"
            figures.setdefault(kind, {}).setdefault(line, []).append(r)
    written = []
    for (what, size, dtype, device), series in figures.items():
        lines = {name: sorted((r["seq_len"], r["tokens_per_s"], r["peak_mem_mb"]) for r in points)
                 for name, points in series.items() if len(points) >= 2}
        if lines:
            slug = re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-").lower()
            written.append(_scaling_figure(lines, f"{what} benchmark: {size}, {dtype}, {device}",
                                           "sequence length (tokens)", "tokens/s", "peak memory (MB)",
                                           out / f"bench_{what}_{size}_{dtype}_{slug}.png"))
    return written


def _scaling_figure(lines: dict[str, list[tuple]], title: str, xlabel: str, speed_label: str, memory_label: str,
                    path: Path) -> Path:
    """Speed and memory against length (log-log), a line per name from (length, speed, memory)
    points sorted by length; a memory line is drawn only where every point has one."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5 + 0.18 * len(lines)))
    for name, points in lines.items():
        lengths, speeds, memories = zip(*points)
        axes[0].plot(lengths, speeds, marker="o", label=name)
        if None not in memories:
            axes[1].plot(lengths, memories, marker="o")
    for ax, label in zip(axes, (speed_label, memory_label)):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set(xlabel=xlabel, ylabel=label)
    fig.suptitle(title)
    fig.legend(loc="lower center", ncol=2, fontsize=7)  # one legend for both panels, below them
    fig.tight_layout(rect=(0, min(0.02 * len(lines) + 0.05, 0.6), 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
