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
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import NotRequired, TypedDict

from .errors import ConfigError

SCHEMA = 1
log = logging.getLogger(__name__)


class RunRecord(TypedDict):
    schema: int
    run_id: str
    status: str               # ok | failed | oom | interrupted | invalid (refused before training: config or data)
    stage: NotRequired[str]   # how far it got: setup | train | evaluate | done (older records lack it)
    task: str
    task_kind: str
    model: str
    attention: dict           # the attention knobs the model ran with
    attention_backend: NotRequired[dict]  # lsgbench's kernels: {train, eval: {backend, dropout}} that ran (empty:
                                          # none ran; older records lack it)
    max_length: int | None    # the input length it trained at
    eval_max_length: NotRequired[int | None]  # the input length it was evaluated at (older records lack it: max_length)
    metrics: dict[str, float]
    efficiency: dict          # speed and memory figures, and the device
    provenance: dict          # dataset, model_init, n_train, n_eval, seed, ...
    config: dict | None       # the resolved Hydra config
    overrides: list[str]
    sweep: NotRequired[str | None]  # the multirun the run belongs to; older records lack it
    env: dict                 # library versions, GPU, git commit
    error: str | None
    artifact: NotRequired[dict | None]  # the model it kept (save_model): {path, fingerprint}; older records lack it


REQUIRED_KEYS = tuple(k for k in RunRecord.__annotations__ if k in RunRecord.__required_keys__)


def new_run_record(task: str, task_kind: str, model: str, seed: int, overrides: Iterable[str] | None,
                   sweep: str | None) -> RunRecord:
    """A run's record before it runs: failed until the run says otherwise."""
    return RunRecord(schema=SCHEMA, run_id=new_run_id(task, model), status="failed", stage="setup", task=task,
                     task_kind=task_kind, model=model, attention={}, attention_backend={}, max_length=None,
                     eval_max_length=None, metrics={}, efficiency={},
                     provenance={"dataset": None, "model_init": None, "n_train": None, "n_eval": None, "seed": seed},
                     config=None, overrides=list(overrides or []), sweep=sweep, env={}, error=None, artifact=None)


def caveats(record: RunRecord) -> list[str]:
    """What a reader of a run's metrics must know: evaluation examples also in training, a small evaluation set."""
    prov, out = record["provenance"], []
    n_eval = prov.get("n_eval")
    if prov.get("eval_overlap"):
        out.append(f"{prov['eval_overlap']} of {n_eval} evaluation examples are also in training "
                   f"(task.allow_eval_overlap=true)")
    if (prov.get("eval_shared_documents") or 0) > (prov.get("eval_overlap") or 0):
        out.append(f"{prov['eval_shared_documents']} of {n_eval} evaluation examples read a document that training "
                   f"examples read too")
    if prov.get("small_eval") and n_eval:
        minimum = ((record.get("config") or {}).get("task") or {}).get("min_eval_examples")
        out.append(f"only {n_eval} evaluation examples (task.min_eval_examples={minimum}): one example is "
                   f"{100 / n_eval:.0f}% of the set")
    return out


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
    phase: str                # infer | train | greedy | beam<k> (generate)
    head: NotRequired[str]    # the task kind whose head was timed (older rows lack it: the family's main head)
    status: str               # ok | oom | error
    step_s: NotRequired[float]
    tokens_per_s: NotRequired[float]  # generate: new tokens per second
    peak_mem_mb: NotRequired[float]
    flops_per_token: NotRequired[float]        # counted in one untimed step (bench.count)
    saved_bytes_per_token: NotRequired[float]  # train: what autograd keeps for backward, weights excluded
    counted_on: NotRequired[str]               # the kernel counted, when not the timed one (FlexAttention: blocks)
    flops_per_s: NotRequired[float]            # flops_per_token x tokens_per_s: the work the step achieved
    matmul_rate: NotRequired[float]            # the device's dense matmul FLOP/s in the bench's dtype, measured in this run
    mfu: NotRequired[float]                    # flops_per_s / matmul_rate
    time_to_first_token_s: NotRequired[float]  # decoder generation: the prompt's prefill and the first new token
    decode_tokens_per_s: NotRequired[float | None]  # ... then the other new tokens, one forward each with the KV cache
    kv_cache_mb: NotRequired[float]            # ... the KV cache after the last new token
    kv_cache_bounded: NotRequired[bool]        # ... every layer's cache keeps a sliding window (False: grows with the past)
    count_error: NotRequired[str]              # why the step could not be counted (its timing stands)
    backend: NotRequired[str]                  # lsgbench's kernels: the backend the step ran on (flex, blocks)
    kernel_ops: NotRequired[int]               # kernel-launching ops of one untimed step (a launch each on a GPU)
    kernel_ops_error: NotRequired[str]         # why they could not be counted
    profile: NotRequired[dict]                 # bench.profile_dir: the profile's figures and its file's name
    profile_error: NotRequired[str]
    busy_elsewhere: NotRequired[float | None]  # share of the CPUs other processes used while it was timed
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
    """The lsgbench source commit (with '+dirty' for uncommitted changes to its code: the package and its
    configs, not committed results), or None outside a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        if Path(top).resolve() != root:  # installed inside some other repository
            return None
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "lsgbench", "conf"],
                               cwd=root, capture_output=True, text=True, timeout=5).stdout.strip()
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


def apply_umask(path: str | Path) -> None:
    """Give a file the permissions the umask allows: writers that go through temporary files (mkstemp,
    safetensors) leave 0600, which other users of a shared store or checkpoint cannot read."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_json_atomic(path: str | Path, data: dict) -> None:
    """Write to a temporary file in the same directory, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    apply_umask(tmp)  # records are meant to be shared
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def json_documents(paths, unreadable: list | None = None):
    """The JSON objects of the given files and of every *.json under the given directories; a file
    that is not readable JSON is skipped with a warning that names it (and appended to `unreadable`
    as (path, reason), for callers that show it)."""
    for p in map(Path, paths):
        for f in sorted(p.rglob("*.json")) if p.is_dir() else [p]:
            try:
                data = json.loads(f.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
                log.warning("skipping %s: not a readable JSON file (%s)", f, err)
                if unreadable is not None:
                    unreadable.append((str(f), f"{type(err).__name__}: {err}"))
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


class Claim:
    """`with Claim(store_dir, key):` runs the body in one process at a time per key, across processes
    that share the store (two sweeps over one store never train the same point twice). The claim is
    a file made with O_EXCL that names its process; a claim whose process is gone (killed) is taken
    over. Waiting processes poll and log who holds the claim."""

    def __init__(self, store_dir: str | Path, key: str, poll_s: float = 2.0):
        self.path = Path(store_dir) / ".claims" / f"{key}.claim"
        self.poll_s = poll_s

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = f"{platform.node()} {os.getpid()}"
        waited = False
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.path.read_text().strip() if self.path.exists() else ""
                if _dead(holder):
                    log.warning("taking over %s from %s, which is no longer running", self.path, holder)
                    self.path.unlink(missing_ok=True)
                elif not waited:
                    log.info("waiting: %s runs this configuration (claim %s)", holder, self.path)
                    waited = True
                time.sleep(self.poll_s)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(me)
            return self

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)
        return False


def _dead(holder: str) -> bool:
    """True when a claim's process ran on this host and is gone."""
    host, _, pid = holder.rpartition(" ")
    if host != platform.node() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def check_writable(directory: str | Path, what: str) -> None:
    """Fail before any work when `directory` cannot take files."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test.")
        probe.close()
    except OSError as err:
        raise ConfigError(f"{what}={str(directory)!r} is not writable ({err.strerror}); choose another "
                          f"directory") from None


def find_done(store_dir: str | Path, config: dict, data_fingerprint: str, device: str,
              world_size: int, pretrained_fingerprint: str | None = None) -> RunRecord | None:
    """The newest ok record in the store with the same config, data and pretrained weights' fingerprints, made on
    the same device with as many processes and after its attention kernel last changed, if any."""
    from .attention import kernel_caveat

    if not Path(store_dir).is_dir():
        return None
    wanted = config_hash(config)
    done = [r for r in read_records([store_dir])
            if r.get("status") == "ok" and config_hash(r.get("config") or {}) == wanted and not kernel_caveat(r)
            and r["provenance"].get("data_fingerprint") == data_fingerprint
            and r["provenance"].get("pretrained_fingerprint") == pretrained_fingerprint
            and r.get("efficiency", {}).get("device") == device
            and r.get("efficiency", {}).get("world_size", 1) == world_size]
    return max(done, key=lambda r: r["run_id"], default=None)
