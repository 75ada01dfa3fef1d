"""The GPU targets of lsgbench's fast paths, computed from benchmark rows (results/gpu/run.sh writes them).

    python results/gpu/targets.py BENCH_DIR OUT.md

Each target compares two rows of the same device and dtype; a missing or failed row reads "not measured".
"""

from __future__ import annotations

import sys
from pathlib import Path

from lsgbench.record import json_documents
from lsgbench.report import bench_rows

LSG = "lsg b=128 s=128 f=4 pooling g=1 {}"  # {}: the backend
LOCAL = "local sliding w={} g=0 flex"
# The targets compare these heads; None: a row made before rows named their head (it timed one of these)
TARGET_HEADS = (None, "classification", "summarization", "causal_lm")


def find(rows, model, phase, seq_len, attention_prefix=""):
    """The ok whole-model row (not attention-only) of this model, phase and length whose attention label
    starts with the prefix, timed with a classifier or generation head (never a QA step's row)."""
    for r in rows:
        if (r["model"], r["phase"], r["seq_len"], r["status"]) == (model, phase, seq_len, "ok") \
                and r["bench_mode"] != "attention" and r.get("head") in TARGET_HEADS \
                and r.get("attention", "").startswith(attention_prefix):
            return r
    return None


def ratio(a, b, key):
    return None if a is None or b is None else a[key] / b[key]


def targets(rows) -> list[tuple[str, float | None, str, bool | None]]:
    """(target, measured ratio, threshold, met) for each target (issue 31's, then generation's)."""
    out = []

    def add(name, value, threshold, at_least):
        met = None if value is None else (value >= threshold if at_least else value <= threshold)
        out.append((name, value, f"{'≥' if at_least else '≤'} {threshold}", met))

    lsg16, sdpa16 = find(rows, "lsg_roberta", "train", 16384, LSG.format("flex")), find(rows, "roberta", "train", 16384)
    add("LSG (flex) train tok/s at 16k / full SDPA's", ratio(lsg16, sdpa16, "tokens_per_s"), 1.5, True)
    add("LSG (flex) train tok/s at 16k / HF Longformer's", ratio(lsg16, find(rows, "longformer", "train", 16384),
                                                                "tokens_per_s"), 3, True)
    add("LSG (flex) train tok/s at 16k / HF BigBird's", ratio(lsg16, find(rows, "bigbird", "train", 16384),
                                                             "tokens_per_s"), 6, True)
    add("LSG (flex) train peak memory at 16k / full SDPA's", ratio(lsg16, sdpa16, "peak_mem_mb"), 1.1, False)
    add("causal LSG (flex) train tok/s at 16k / full causal SDPA's, base Llama",
        ratio(find(rows, "llama", "train", 16384, LSG.format("flex")), find(rows, "llama", "train", 16384, "full"),
              "tokens_per_s"), 1.3, True)
    add("local w=256 (flex) train tok/s at 1k / full SDPA's",
        ratio(find(rows, "local_roberta", "train", 1024, LOCAL.format(256)), find(rows, "roberta", "train", 1024),
              "tokens_per_s"), 0.9, True)
    add("LSG blocks backend train tok/s at 16k / flex's",
        ratio(find(rows, "lsg_roberta", "train", 16384, LSG.format("blocks")), lsg16, "tokens_per_s"), 0.5, True)
    add("causal LSG blocks backend train tok/s at 16k / flex's, base Llama",
        ratio(find(rows, "llama", "train", 16384, LSG.format("blocks")),
              find(rows, "llama", "train", 16384, LSG.format("flex")), "tokens_per_s"), 0.5, True)
    for phase in ("greedy", "beam4"):
        lsg, led = find(rows, "lsg_bart", phase, 16384), find(rows, "led", phase, 16384)
        add(f"LSG-BART {phase} generation tok/s at 16k / LED's", ratio(lsg, led, "tokens_per_s"), 1.4, True)
        add(f"LSG-BART {phase} generation peak memory at 16k / LED's", ratio(lsg, led, "peak_mem_mb"), 0.25, False)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    rows = bench_rows(json_documents([argv[0]]))
    devices = sorted({f"{r['device']} ({r['dtype']})" for r in rows}) or ["no rows"]
    lines = [f"# GPU targets on {', '.join(devices)}", "",
             "| target | measured | needed | met |", "|---|---|---|---|"]
    for name, value, threshold, met in targets(rows):
        lines.append(f"| {name} | {'not measured' if value is None else f'{value:.2f}×'} | {threshold} | "
                     f"{'—' if met is None else 'yes' if met else 'no'} |")
    Path(argv[1]).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
