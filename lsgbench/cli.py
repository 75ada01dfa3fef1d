"""`python -m lsgbench` / `lsgbench`: the Hydra entry point for one run or a sweep (-m)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from .config import attention_shorthand, config_dir
from .errors import Terminated

log = logging.getLogger("lsgbench")


def summary(record: dict) -> str:
    from .grouping import run_label
    from .record import caveats

    reused = " (skipped: reused from the store; force=true reruns it)" if record.get("reused") else ""
    lines = [f"run {record['run_id']}: {record['status']}{reused}"]
    if record["error"]:
        lines.append(f"  error: {record['error']}")
    prov = record["provenance"]
    if prov["dataset"] is None:  # it stopped before its data loaded: nothing more to say
        return "\n".join(lines)
    splits = prov.get("splits") or {}
    evaluated = record.get("eval_max_length")
    lines.append(f"  task={record['task']} model={record['model']} attention={run_label(record)!r} "
                 f"max_length={record['max_length']}"
                 + (f" eval_max_length={evaluated}" if evaluated not in (None, record["max_length"]) else "")
                 + f" data={prov['dataset']} init={prov['model_init']} "
                 f"n_train={prov['n_train']} n_eval={prov['n_eval']}"
                 + (f" (eval: {splits['eval']})" if "eval" in splits else ""))
    cut = truncation_line(prov.get("truncation") or {})
    if cut:
        lines.append(f"  truncated:  {cut}")
    windows = [f"{split}: {f['windows_per_context_mean']:.1f} per context on average, at most "
               f"{f['windows_per_context_max']}" for split, f in (prov.get("truncation") or {}).items()
               if f.get("windows_per_context_max", 1) > 1]  # extractive QA reading long contexts in windows
    if windows:
        lines.append(f"  windows:    {'; '.join(windows)}")
    lines += [f"  warning:    {caveat}" for caveat in caveats(record)]
    if record["metrics"]:
        metrics = "  ".join(f"{k}={v:.2f}" for k, v in record["metrics"].items())
        lines.append(f"  metrics:    (n={prov['n_eval']}) {metrics}   ({units(record['metrics'])})")
    eff = record["efficiency"]
    if "train_tokens_per_s" in eff or "eval_tokens_per_s" in eff:  # an evaluation-only run has no training figures
        lines.append(f"  efficiency: device={eff['device']}"
                     + (f"  train {eff['train_tokens_per_s']:.0f} tok/s ({eff['train_steps']} steps, "
                        f"{eff['train_s']:.1f}s, peak {eff['train_peak_mem_mb']:.0f} MB)" if "train_tokens_per_s" in eff
                        else "")
                     + (f"  eval {eff['eval_tokens_per_s']:.0f} tok/s ({eff['eval_s']:.1f}s, peak "
                        f"{eff['eval_peak_mem_mb']:.0f} MB)" if "eval_tokens_per_s" in eff else "")
                     + (f"  generated {eff['generated_tokens_per_s']:.0f} tok/s" if "generated_tokens_per_s" in eff
                        else ""))
    return "\n".join(lines)


def units(metrics: dict) -> str:
    """The metrics' units as the summary says them: `0-100`, or `0-100; gen_len in tokens`."""
    from .kinds import metric

    by_unit: dict[str, list[str]] = {}
    for name in metrics:
        by_unit.setdefault(metric(name).unit, []).append(name)
    common = max(by_unit, key=lambda unit: len(by_unit[unit]))
    return "; ".join([common] + [f"{', '.join(names)} in {unit}" for unit, names in by_unit.items() if unit != common])


def truncation_line(truncation: dict) -> str:
    """e.g. `eval: 1 of 4 inputs cut, 74% of the split's tokens dropped (one input lost 98.9%)`; empty when
    nothing was cut."""
    parts = []
    for split, figures in truncation.items():
        for what in ("inputs", "targets"):
            if figures.get(f"{what}_cut"):
                n = figures[f"{what}_cut"]
                worst = f"one {what[:-1]} lost {share(figures[f'{what}_cut_max_share'])}" if n == 1 else \
                    (f"the cut {what} lost {share(figures[f'{what}_cut_mean_share'])} on average, at most "
                     f"{share(figures[f'{what}_cut_max_share'])}")
                parts.append(f"{split}: {n} of {figures['examples']} {what} cut, "
                             f"{share(figures[f'{what}_dropped_share'])} of the split's tokens dropped ({worst})")
        if figures.get("answers_cut"):
            parts.append(f"{split}: {figures['answers_cut']} of {figures['examples']} answers cut off")
        if figures.get("answers_unreachable"):
            parts.append(f"{split}: {figures['answers_unreachable']} of {figures['examples']} questions no span can "
                         f"answer right (every gold answer outside the windows or longer than "
                         f"task.max_answer_length)")

    return "; ".join(parts)


def share(fraction: float) -> str:
    """A share in percent: 74%; one decimal near 0 and 100% (0.4%, 98.9%), where it matters; <0.1%."""
    percent = 100 * fraction
    if 0 < percent < 0.1:
        return "<0.1%"
    return f"{percent:.1f}%" if percent < 10 or percent > 90 else f"{percent:.0f}%"


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def _hydra_main(cfg) -> float | None:
    # Imported here, after Hydra composed the config: a config mistake is reported in a second,
    # not after the training stack (torch, transformers, datasets) has loaded.
    from . import pipeline

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    sweep = Path(hydra_cfg.sweep.dir).name if multirun else None
    overrides = list(hydra_cfg.overrides.task)
    if cfg.pretrain:  # pretrain (or reuse the pretraining), then fine-tune what it saved
        from . import protocol

        pretraining, record = protocol.run(cfg, hydra_cfg.runtime.output_dir, overrides, sweep)
        if pipeline.rank() == 0:
            print("pretraining " + summary(pretraining), flush=True)
    else:
        record = pipeline.run(cfg, hydra_cfg.runtime.output_dir, overrides, sweep)
    if pipeline.rank() != 0:
        return None
    print(summary(record), flush=True)
    if record["status"] != "ok" and not multirun:
        sys.exit(1)  # a sweep goes on past a failed point; a single run says it failed
    metrics = record["metrics"]
    return next(iter(metrics.values())) if metrics else None


def main() -> None:
    sys.argv = [sys.argv[0], *map(attention_shorthand, sys.argv[1:])]
    go_offline_without_network()
    signal.signal(signal.SIGTERM, _terminate)
    try:
        _hydra_main()
    except KeyboardInterrupt as err:  # the run's record is written (pipeline.run); no traceback
        how = "SIGTERM" if isinstance(err, Terminated) else "Ctrl-C"
        print(f"lsgbench: stopped by {how}; a run under way wrote its record (status interrupted) with the "
              f"figures so far", file=sys.stderr)
        sys.exit(143 if isinstance(err, Terminated) else 130)


def _terminate(signum, frame):
    raise Terminated


def go_offline_without_network(timeout_s: float = 3.0) -> None:
    """With no route to the Hugging Face hub, tell the hub libraries so before they load: they then
    fail at once on what is not cached instead of retrying for a minute."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        return
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
    except OSError:
        os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
        log.info("the model hub (%s) is unreachable: running offline, from cached and local files only", host)


if __name__ == "__main__":
    main()
