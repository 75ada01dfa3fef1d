"""PNG plots for the report: what a sweep's runs support, each written only when it has data. They
draw the comparison rows of `lsgbench.grouping` (each figure a (mean, std) pair) and benchmark rows.

- `lsg_grid_<task>.png`: the metric against LSG block size and against sparsity factor, over the
  largest set of LSG runs that differ only in attention knobs;
- `length_scaling.png`: training tokens/s and peak memory against max_length, a line per model and
  attention within one sweep;
- `quality_speed_<task>.png`: the metric against training tokens/s, Pareto front marked, points
  numbered (a side table names them), marker by training budget;
- `bench_<attention|model|generate>_<size>_<dtype>_<device>.png`: benchmark tokens/s and peak memory against
  length.

The run plots say their setup under them: what all their runs share and what differs between them.
"""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from .measure import BUSY  # noqa: E402

MARKERS = "osD^vP*Xph<>"
LINESTYLES = ("-", "--", ":", "-.")


def pareto_front(points: list[tuple[float, float]], higher_y_is_better: bool = True) -> list[int]:
    """Indices of the points no other point beats on both axes (higher x is better; higher or lower y), by x."""
    sign = 1 if higher_y_is_better else -1
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -sign * points[i][1]))
    front, best_y = [], float("-inf")
    for i in order:
        if sign * points[i][1] > best_y:
            front.append(i)
            best_y = sign * points[i][1]
    return sorted(front, key=lambda i: points[i][0])


def _save(fig, path: Path, bottom: float = 0.0) -> Path:
    """Lay out `fig` above `bottom` (a fraction of its height, kept for a caption or legend) and write it."""
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _add_caption(fig, caption: str) -> float:
    """Write `caption` under the figure, wrapped; the fraction of the figure's height it takes."""
    if not caption:
        return 0.0
    text = textwrap.fill(caption, int(fig.get_figwidth() * 17))
    fig.text(0.01, 0.01, text, fontsize=7, color="dimgray", va="bottom")
    return (0.15 + 0.13 * (text.count("\n") + 1)) / fig.get_figheight()


def _facts(row: dict) -> dict:
    """What a caption may say of a row's setup (attention aside)."""
    return {"task": row["task"], "device": row.get("device"), "model": row["model"],
            "max_length": row["max_length"], "init": row["model_init"], "train steps": _steps(row),
            "train examples": row.get("n_train")}


def _caption(rows: list[dict], *notes: str, knobs: bool = False) -> str:
    """The setup under a plot: the facts (and, with `knobs`, attention knobs) that all its rows share
    (held fixed) and the names of those that differ between them, then `notes`."""
    facts = [{**_facts(r), **(r["knobs"] if knobs else {})} for r in rows]
    names = dict.fromkeys(name for f in facts for name in f)
    values = {name: list(dict.fromkeys(f.get(name) for f in facts)) for name in names}
    fixed = ", ".join(f"{name}={v[0]}" for name, v in values.items() if len(v) == 1 and v[0] is not None)
    varies = ", ".join(name for name, v in values.items() if len(v) > 1)
    parts = [f"held fixed: {fixed}" if fixed else "", f"varies: {varies}" if varies else "", *notes]
    return "; ".join(part for part in parts if part)


def _shared_machine(names: list[str], shares: list[float | None], noun: str = "") -> str:
    """A caption note naming the points (`noun` before their names) whose speed was measured while other
    processes kept the CPUs busy, as the tables note it; empty when none was."""
    busy = [(name, share) for name, share in zip(names, shares) if share is not None and share > BUSY]
    if not busy:
        return ""
    return (f"speed measured on a shared machine for {noun}{', '.join(name for name, _ in busy)} (other processes "
            f"used up to {max(share for _, share in busy):.0%} of the CPUs)")


def _stale(names: list[str], rows: list[dict], noun: str = "") -> str:
    """A caption note naming the points measured before their attention kernel last changed (the table's †)."""
    stale = [name for name, row in zip(names, rows) if row.get("stale_kernel")]
    return f"speed and memory of {noun}{', '.join(stale)} measured before their attention kernel last changed" \
        if stale else ""


def _mean(row: dict, figure: str) -> float | None:
    """The mean over seeds of an efficiency figure; None where the row has none."""
    stat = row["efficiency"].get(figure)
    return stat and stat[0]


def _ok(grouped: list[dict], metric: str | None = None) -> list[dict]:
    return [r for r in grouped if r["seeds"] and (metric is None or r["metrics"].get(metric))
            and "train_tokens_per_s" in r["efficiency"]]


def plot_records(metrics: list[str], grouped: list[dict], out: Path, higher_is_better: dict[str, bool | None]) -> list[Path]:
    """Per task, the quality axis is its first of `metrics` that has a better direction (`higher_is_better`:
    True, False, or None for a figure such as a length) and that its rows have."""
    written = []
    for task in dict.fromkeys(r["task"] for r in grouped):
        mine = [r for r in grouped if r["task"] == task]
        metric = next((m for m in metrics if higher_is_better.get(m) is not None
                       and any(r["metrics"].get(m) for r in mine)), None)
        mine = _ok(mine, metric)
        if metric and len(mine) >= 2:
            written.append(quality_speed(mine, metric, higher_is_better[metric], out / f"quality_speed_{task}.png",
                                         task))
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
    """A row's name in a plot; rows with equal labels are told apart by how their configurations differ."""
    differs = row.get("differs") or ""
    differs = differs if len(differs) <= 60 else differs[:59] + "…"  # the table's column has it whole
    return f"{row['model']} {row['attention']} @{row['max_length']}" + (f" [{differs}]" if differs else "")


def _steps(row: dict) -> int | None:
    steps = _mean(row, "train_steps")
    return None if steps is None else round(steps)


def _budget(row: dict) -> str:
    """How much training a row had: optimizer steps and training examples."""
    return f"{_steps(row) or '?'} steps × {row.get('n_train') or '?'} examples"


def quality_speed(grouped: list[dict], metric: str, higher: bool, path: Path, task: str) -> Path:
    """The metric against training tokens/s: a point per row, numbered (the side table names it), marker
    and colour by budget; the Pareto front a step line through its (ringed) points."""
    budgets = list(dict.fromkeys(sorted(_budget(r) for r in grouped)))
    grouped = sorted(grouped, key=lambda r: (budgets.index(_budget(r)), _mean(r, "train_tokens_per_s")))
    points = [(_mean(r, "train_tokens_per_s"), r["metrics"][metric][0]) for r in grouped]
    height = max(4.5, 1.2 + 0.125 * len(grouped))
    fig, (ax, side) = plt.subplots(1, 2, figsize=(12, height), width_ratios=(3, 2))
    for b, budget in enumerate(budgets):
        mine = [p for p, r in zip(points, grouped) if _budget(r) == budget]
        # clip_on=False: a score of exactly zero sits on the axis, its marker whole
        ax.scatter(*zip(*mine), marker=MARKERS[b % len(MARKERS)], color=f"C{b}", zorder=2, label=budget, clip_on=False)
    _front_line(ax, points, higher)
    ax.set_xscale("log")
    ax.margins(y=0.15)  # room for stacked labels
    low, high = min(y for _, y in points), max(y for _, y in points)
    if low >= 0 and (low == high or ax.get_ylim()[0] < 0):  # scores and losses: an axis below zero shows nothing
        ax.set_ylim(0, max(1.0, 1.15 * high) if low == high else None)
    _number(ax, points)
    _plain_log_ticks(ax.xaxis)
    ax.set(xlabel="training tokens/s", ylabel=metric, title=f"{task}: {metric} vs training speed")
    ax.legend(fontsize=7, title="training budget (marker)", title_fontsize=7)
    side.axis("off")
    for i, row in enumerate(grouped):
        side.annotate(f"{i + 1:>2}  {_name(row)}", (0, 1), xycoords="axes fraction", xytext=(0, -9 * i),
                      textcoords="offset points", va="top", fontsize=7, family="monospace",
                      color=f"C{budgets.index(_budget(row))}")
    caption = _caption(grouped, "a marker and colour per training budget: runs of different budgets are not "
                                "like for like", f"{'higher' if higher else 'lower'} {metric} and higher speed are better",
                       _shared_machine(points := [str(i + 1) for i in range(len(grouped))],
                                       [_mean(r, "train_busy_elsewhere") for r in grouped], "points "),
                       _stale(points, grouped, "points "))
    return _save(fig, path, _add_caption(fig, caption))


def _front_line(ax, points: list[tuple[float, float]], higher: bool) -> None:
    """The Pareto front as a step line: the edge of what its points beat, from the slowest point's speed
    to the worst quality (the lowest, or the highest where lower is better); its points ringed."""
    front = [points[i] for i in pareto_front(points, higher)]
    worst = (min if higher else max)(y for _, y in points)
    xs = [min(x for x, _ in points), *(x for x, _ in front), front[-1][0]]
    ys = [front[0][1], *(y for _, y in front), worst]
    ax.step(xs, ys, where="pre", linestyle="--", color="tab:red", zorder=1, label="Pareto front")
    ax.scatter(*zip(*front), s=110, facecolors="none", edgecolors="tab:red", zorder=3, clip_on=False)


def _number(ax, points: list[tuple[float, float]]) -> None:
    """Label the points 1, 2, ... above them, one label per group of points that coincide ("3,4"); a label
    that would overlap one already placed goes a line higher, with a leader line to its point."""
    ax.autoscale_view()
    at = ax.transData.transform(points) * 72 / ax.figure.dpi  # where the points are drawn, in points
    clusters: list[list[int]] = []
    for i in sorted(range(len(points)), key=lambda i: tuple(at[i])):
        cluster = next((c for c in clusters if math.dist(at[c[0]], at[i]) < 5), None)
        if cluster:
            cluster.append(i)
        else:
            clusters.append([i])
    placed: list[tuple[float, float, int]] = []  # (x end, y, level) of the labels so far, left to right
    for cluster in clusters:
        text = ",".join(str(i + 1) for i in sorted(cluster))
        x, y = at[cluster[0]]
        level = next(k for k in range(len(points)) if not any(
            lvl == k and abs(y_ - y) < 12 and x_end > x for x_end, y_, lvl in placed))
        placed.append((x + 4 + 4.5 * len(text), y, level))
        ax.annotate(text, points[cluster[0]], fontsize=7, xytext=(2, 4 + 9 * level), textcoords="offset points",
                    arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "gray"} if level else None)


def _plain_log_ticks(axis) -> None:
    """Log-axis ticks at 1, 2 and 5 per decade (more where the axis spans less than one), written plainly
    (500, 2k, 50k), no minor labels."""
    low, high = axis.get_view_interval()
    axis.set_major_locator(LogLocator(subs=(1, 2, 5) if high > 10 * low else (1, 2, 3, 4, 5, 6, 8)))
    axis.set_major_formatter(FuncFormatter(_plain))
    axis.set_minor_formatter(NullFormatter())


def _plain(value: float, _=None) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def lsg_grid(grouped: list[dict], metric: str, path: Path, task: str) -> Path:
    """Two panels: the metric vs block size and vs sparsity factor, a line per setting of everything
    else (model, length, the other knobs; the legend names what differs); error bars: std over seeds."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, x_knob in zip(axes, ("block_size", "sparsity_factor")):
        _grid_panel(ax, grouped, metric, x_knob)
    fig.suptitle(f"{task}: LSG knobs")
    caption = _caption(grouped, "each line is shifted a little along x, with its own marker and line style, "
                                "so that equal lines stay visible (the x ticks are the knob values)", knobs=True)
    return _save(fig, path, _add_caption(fig, caption))


def _grid_panel(ax, grouped: list[dict], metric: str, x_knob: str) -> None:
    lines: dict[tuple, list[dict]] = {}
    for r in grouped:
        lines.setdefault(_setting(r, x_knob), []).append(r)
    varying = [i for i in range(len(next(iter(lines)))) if len({key[i] for key in lines}) > 1]
    values = sorted({_knob(r, x_knob) for r in grouped})
    span = math.log2(values[-1] / values[0]) or 1
    for n, (key, members) in enumerate(sorted(lines.items(), key=lambda kv: str(kv[0]))):
        members.sort(key=lambda r: _knob(r, x_knob))
        shift = 2 ** (0.03 * span * (n - (len(lines) - 1) / 2))  # a dodge along the log2 x-axis
        ax.errorbar([_knob(r, x_knob) * shift for r in members], [r["metrics"][metric][0] for r in members],
                    yerr=[r["metrics"][metric][1] for r in members], capsize=3, marker=MARKERS[n % len(MARKERS)],
                    linestyle=LINESTYLES[n % len(LINESTYLES)],
                    label=" ".join(f"{key[i][0]}={key[i][1]}" for i in varying) or None)
    ax.set_xscale("log", base=2)
    ax.set_xticks(values, [str(v) for v in values])
    ax.minorticks_off()
    ax.set(xlabel=x_knob.replace("_", " "), ylabel=metric)
    if varying:
        ax.legend(fontsize=7, title="a line per " + ", ".join(key[i][0] for i in varying), title_fontsize=7)


def _setting(row: dict, x_knob: str) -> tuple:
    """What identifies a line of the grid plot: all but the x-axis knob, as (name, value) pairs."""
    knobs = {k: v for k, v in row["knobs"].items() if k != x_knob}
    return (("model", row["model"]), ("max_length", row["max_length"]), *sorted(knobs.items()))


def _sweep_series(grouped: list[dict]) -> dict[tuple, list[dict]]:
    """Lines of the length plot, keyed (task, sweep, model and attention): the runs of one sweep with
    the same model and attention (runs outside a sweep, or of different sweeps, may differ in anything).
    Runs of one sweep that share a label at one length (a sweep over another knob too) make a line each,
    named by how they differ."""
    series: dict[tuple, list[dict]] = {}
    for row in grouped:
        if row["sweep"]:
            series.setdefault((row["task"], row["sweep"], f"{row['model']} {row['attention']}"), []).append(row)
    for key, rows in list(series.items()):
        if len({r["max_length"] for r in rows}) < len(rows):
            del series[key]
            for row in rows:
                series.setdefault((*key[:2], f"{key[2]} [{row.get('differs') or 'other defaults'}]"), []).append(row)
    return {key: sorted(points, key=lambda r: r["max_length"]) for key, points in series.items()}


def length_scaling(series: dict[tuple, list[dict]], path: Path) -> Path:
    series = {key: points for key, points in series.items() if len(points) >= 2}
    shared = [len({key[i] for key in series}) == 1 for i in range(2)] + [False]  # name task, sweep if they differ
    lines = {" ".join(part for part, same in zip(key, shared) if not same):
             [(r["max_length"], _mean(r, "train_tokens_per_s"), _mean(r, "train_peak_mem_mb")) for r in points]
             for key, points in series.items()}
    title = " ".join(part for part, same in zip(next(iter(series)), shared) if same)
    rows = [r for points in series.values() for r in points]
    names = [f"{r['model']} {r['attention']} @{r['max_length']}" for r in rows]
    caption = _caption(rows, "a line per model and attention of one sweep",
                       _shared_machine(names, [_mean(r, "train_busy_elsewhere") for r in rows]), _stale(names, rows))
    return _scaling_figure(lines, title, "max_length (tokens)", "training tokens/s", "training peak memory (MB)", path,
                           caption)


def plot_bench(bench_rows: list[dict], out: Path) -> list[Path]:
    """One figure per kind of measurement (attention-only, whole model, decoder-only model with its language-modelling
    head, generation; size, dtype, device): tokens/s and peak memory against length, a line per model, attention and
    phase."""
    figures: dict[tuple, dict[str, list[dict]]] = {}
    for r in bench_rows:
        if r["status"] == "ok":
            what = r["bench_mode"] if r["bench_mode"] in ("attention", "generate") else "model"
            what = "decoder" if what == "model" and r.get("head") == "causal_lm" else what
            kind = (what, r["size"], r["dtype"], r["device"])
            line = " ".join(x for x in (r["model"], r.get("attention"), r.get("head"), r["phase"]) if x)
            figures.setdefault(kind, {}).setdefault(line, []).append(r)
    written = []
    for (what, size, dtype, device), series in figures.items():
        series = {name: points for name, points in series.items() if len(points) >= 2}
        lines = {name: sorted((r["seq_len"], r["tokens_per_s"], r["peak_mem_mb"]) for r in points)
                 for name, points in series.items()}
        if lines:
            slug = re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-").lower()
            timed = [(f"{name} @{r['seq_len']}", r.get("busy_elsewhere"))
                     for name, points in series.items() for r in points]
            written.append(_scaling_figure(lines, f"{what} benchmark: {size}, {dtype}, {device}",
                                           "sequence length (tokens)",
                                           "generated tokens/s" if what == "generate" else "tokens/s", "peak memory (MB)",
                                           out / f"bench_{what}_{size}_{dtype}_{slug}.png",
                                           _shared_machine(*zip(*timed))))
    return written


def _scaling_figure(lines: dict[str, list[tuple]], title: str, xlabel: str, speed_label: str, memory_label: str,
                    path: Path, caption: str = "") -> Path:
    """Speed and memory against length (log-log), a line per name from (length, speed, memory)
    points sorted by length; a memory line is drawn only where every point has one; `caption` under all."""
    legend_inches = 0.17 * -(-len(lines) // 2) + 0.3  # two columns of entries, and the frame
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5 + legend_inches))
    # One colour per configuration (up to 20 distinct); a benchmark's infer phase dashed beside its train.
    configurations = list(dict.fromkeys(name.removesuffix(" infer").removesuffix(" train") for name in lines))
    for name, points in lines.items():
        lengths, speeds, memories = zip(*points)
        style = dict(marker="o", linestyle="--" if name.endswith(" infer") else "-",
                     color=plt.cm.tab20(configurations.index(name.removesuffix(" infer").removesuffix(" train")) % 20))
        axes[0].plot(lengths, speeds, label=name, **style)
        if None not in memories:
            axes[1].plot(lengths, memories, **style)
    for ax, label in zip(axes, (speed_label, memory_label)):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set(xlabel=xlabel, ylabel=label)
    fig.suptitle(title)
    bottom = _add_caption(fig, caption)
    fig.legend(loc="lower center", bbox_to_anchor=(0.5, bottom), ncol=2, fontsize=7)  # one for both panels, below
    return _save(fig, path, bottom + legend_inches / fig.get_figheight())
