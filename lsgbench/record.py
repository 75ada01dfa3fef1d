"""What lsgbench writes (schema 1), written atomically: the run record, one JSON document per run,
and the benchmark result, one per `python -m lsgbench.bench` run."""

# No `from __future__ import annotations`: TypedDict sees NotRequired only in evaluated annotations.
import hashlib
import json
import logging
import os
import platform
import subprocess
import tempfile
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import NotRequired, TypedDict

SCHEMA = 1
log = logging.getLogger(__name__)


class RunRecord(TypedDict):
    schema: int
    run_id: str
    status: str               # ok | failed | oom
    task: str
    task_kind: str
    model: str
    attention: dict           # the attention knobs the model ran with
    max_length: int | None
    metrics: dict[str, float]
    efficiency: dict          # speed and memory figures, and the device
    provenance: dict          # dataset, model_init, n_train, n_eval, seed, ...
    config: dict | None       # the resolved Hydra config
    overrides: list[str]
    sweep: NotRequired[str | None]  # the multirun the run belongs to; older records lack it
    env: dict                 # library versions, GPU, git commit
    error: str | None


REQUIRED_KEYS = tuple(k for k in RunRecord.__annotations__ if k in RunRecord.__required_keys__)


def new_run_record(task: str, task_kind: str, model: str, seed: int, overrides: Iterable[str] | None,
                   sweep: str | None) -> RunRecord:
    """A run's record before it runs: failed until the run says otherwise."""
    return RunRecord(schema=SCHEMA, run_id=new_run_id(task, model), status="failed", task=task, task_kind=task_kind,
                     model=model, attention={}, max_length=None, metrics={}, efficiency={},
                     provenance={"dataset": None, "model_init": None, "n_train": None, "n_eval": None, "seed": seed},
                     config=None, overrides=list(overrides or []), sweep=sweep, env={}, error=None)


class BenchRow(TypedDict):
    """One (length, phase) point of a benchmark; the figures only where status is ok, the error where not."""
    model: str
    attention: str            # its label
    size: str
    seq_len: int
    batch: int
    tokens: int
    dtype: str
    bench_mode: str
    phase: str                # infer | train
    status: str               # ok | oom | error
    step_s: NotRequired[float]
    tokens_per_s: NotRequired[float]
    peak_mem_mb: NotRequired[float]
    error: NotRequired[str]


class BenchResult(TypedDict):
    schema: int
    kind: str                 # "bench"
    device: str
    env: dict
    config: dict              # the resolved Hydra config
    rows: list[BenchRow]


def new_bench_result(device: str, env: dict, config: dict, rows: list[BenchRow]) -> BenchResult:
    return BenchResult(schema=SCHEMA, kind="bench", device=device, env=env, config=config, rows=rows)


# Config keys that say where and how a run is kept, not what it computes.
RUN_ONLY_KEYS = ("paths", "store_dir", "cache_dir", "debug", "logger", "force")  # store_dir, cache_dir: older records


def config_hash(config: dict, ignore: tuple[str, ...] = ()) -> str:
    """A fingerprint of what a run computes: its resolved config less RUN_ONLY_KEYS (and `ignore`)."""
    kept = {k: v for k, v in config.items() if k not in RUN_ONLY_KEYS + ignore}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def new_run_id(task: str, model: str) -> str:
    """Sortable by start time, unique across processes starting in the same second."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{task}-{model}-{uuid.uuid4().hex[:8]}"


def git_commit() -> str | None:
    """The lsgbench source commit (with '+dirty' for uncommitted changes), or None outside a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        if Path(top).resolve() != root:  # installed inside some other repository
            return None
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def environment() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import torch
    import transformers

    try:
        datasets = version("datasets")
    except PackageNotFoundError:  # the benchmark runs without it
        datasets = None
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "datasets": datasets, "gpu": gpu, "git_commit": git_commit()}


def write_json_atomic(path: str | Path, data: dict) -> None:
    """Write to a temporary file in the same directory, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; records are meant to be shared
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def json_documents(paths):
    """The JSON objects of the given files and of every *.json under the given directories; a file
    that is not readable JSON is skipped with a warning that names it."""
    for p in map(Path, paths):
        for f in sorted(p.rglob("*.json")) if p.is_dir() else [p]:
            try:
                data = json.loads(f.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
                log.warning("skipping %s: not a readable JSON file (%s)", f, err)
                continue
            if isinstance(data, dict):
                yield data


def run_records(documents) -> list[RunRecord]:
    """The run records among JSON documents, once per run_id (a run dir's run_record.json and the
    store's copy are the same run)."""
    records = {}
    for data in documents:
        if data.get("schema") == SCHEMA and "run_id" in data:
            records.setdefault(data["run_id"], data)
    return list(records.values())


def bench_results(documents) -> list[BenchResult]:
    """The benchmark results among JSON documents."""
    return [data for data in documents if data.get("schema") == SCHEMA and data.get("kind") == "bench"]


def read_records(paths) -> list[RunRecord]:
    """Every run record under the given files or directories (recursively)."""
    return run_records(json_documents(paths))


def find_done(store_dir: str | Path, config: dict, data_fingerprint: str, device: str,
              world_size: int) -> RunRecord | None:
    """The newest ok record in the store with the same config and data fingerprints, made on the same
    device with as many processes, if any."""
    if not Path(store_dir).is_dir():
        return None
    wanted = config_hash(config)
    done = [r for r in read_records([store_dir])
            if r.get("status") == "ok" and config_hash(r.get("config") or {}) == wanted
            and r["provenance"].get("data_fingerprint") == data_fingerprint
            and r.get("efficiency", {}).get("device") == device
            and r.get("efficiency", {}).get("world_size", 1) == world_size]
    return max(done, key=lambda r: r["run_id"], default=None)
