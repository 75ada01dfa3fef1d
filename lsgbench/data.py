"""Task data: resolve the source, read rows in the unified schema, tokenize with a cache.

Source order: `task.data_dir` (or `$LSGBENCH_DATA_DIR/<task.name>`) when given, since the user
named it; otherwise the hub dataset, or the built-in generator for `source: synthetic` tasks.
Tasks with `source: local` (the generic `classification` and `summarization`) need the folder.
Unified schema: classification {"id", "text", "label"}, summarization {"id", "article", "abstract"}.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import random
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError
from .kinds import task_kind
from .synthetic import synthetic_rows

log = logging.getLogger(__name__)

# Bump when tokenization changes, so cached tokenized datasets are rebuilt.
PREPROCESS_VERSION = 2
CARVE_SEED = 0  # carving and subsampling use a fixed seed: the data is the same for every run seed
CARVE_ORDER = ("validation", "test")


@dataclass
class TaskData:
    train: list[dict]
    eval: list[dict]
    source: str  # provenance: "local:<dir>", "hub:<path>[/<name>]@<revision>" or "synthetic:<generator>"
    notes: list[str] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        """A hash of the examples a run uses: a run on edited data is another run."""
        return rows_fingerprint([self.train, self.eval])


def local_data_dir(task) -> Path | None:
    if task.data_dir:
        return Path(task.data_dir).expanduser()
    root = os.environ.get("LSGBENCH_DATA_DIR")
    if root and (Path(root) / task.name).is_dir():
        return Path(root) / task.name
    return None


def load_task_data(task) -> TaskData:
    """Read the train and eval splits of a task, validated and subsampled as configured."""
    task_kind(task).check(task)  # before any reading
    wanted = [task.train_split, task.eval_split]
    data_dir = local_data_dir(task)
    if data_dir is not None:
        source = f"local:{data_dir}"
        available = _local_splits(data_dir)
        read = lambda split: _read_jsonl(data_dir / f"{split}.jsonl")  # noqa: E731
    elif task.source == "local":
        raise ConfigError(f"task {task.name!r} reads a local folder: set task.data_dir=DIR (or LSGBENCH_DATA_DIR=ROOT "
                          f"with ROOT/{task.name}/) holding <split>.jsonl files in the unified schema {_schema(task)}")
    elif task.source == "synthetic":
        source = f"synthetic:{task.synthetic.generator}(seed={task.synthetic.seed})"
        available = [s for s in task.splits if task.synthetic.get(f"n_{s}")]
        read = lambda split: synthetic_rows(task, split, task.synthetic[f"n_{split}"])  # noqa: E731
    elif task.source == "hub":
        source, available, read = _hub_reader(task)
    else:
        raise ConfigError(f"task.source={task.source!r} is unknown; choose local, hub or synthetic")

    if task.train_split not in available:
        hint = f" (to train on it: task.train_split={available[0]})" if len(available) == 1 else ""
        raise ConfigError(f"{source} has no {task.train_split!r} split; it has {sorted(available)}{hint}")
    rows = {task.train_split: read(task.train_split)}
    notes = []
    missing = [s for s in wanted if s not in available]
    for split in missing:
        if split not in CARVE_ORDER:
            raise ConfigError(f"{source} has no {split!r} split (it has {sorted(available)}), and only "
                              f"{list(CARVE_ORDER)} can be carved from {task.train_split!r}")
    if missing:
        rows.update(_carve(rows[task.train_split], missing, task.carve_fraction, task.train_split))
        notes.append(f"carved {missing} from {task.train_split!r} ({task.carve_fraction:.0%} each, seed {CARVE_SEED})")
    for split in wanted:
        if split not in rows:
            rows[split] = read(split)

    train = _validated(task, rows[task.train_split], f"{source} {task.train_split}")
    evals = _validated(task, rows[task.eval_split], f"{source} {task.eval_split}")
    train = _subsample(train, task.max_train_samples, "task.max_train_samples")
    evals = _subsample(evals, task.max_eval_samples, "task.max_eval_samples")
    for note in notes:
        log.info(note)
    return TaskData(train=train, eval=evals, source=source, notes=notes)


def _local_splits(data_dir: Path) -> list[str]:
    if not data_dir.is_dir():
        raise ConfigError(f"task.data_dir={str(data_dir)!r} is not a directory")
    splits = sorted(p.stem for p in data_dir.glob("*.jsonl"))
    if not splits:
        raise ConfigError(f"task.data_dir={str(data_dir)!r} holds no <split>.jsonl files (e.g. train.jsonl, test.jsonl)")
    return splits


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ConfigError(f"{path} line {n} is not UTF-8 text (byte {raw[err.start]:#04x} at column "
                                  f"{err.start + 1}); save the file as UTF-8") from None
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ConfigError(f"{path} line {n} is not valid JSON: {err}") from None
    return rows


def _hub_reader(task):
    import datasets

    hub = task.hub
    source = f"hub:{hub.path}{'/' + hub.name if hub.name else ''}@{hub.revision or 'main'}"
    try:
        builder = datasets.load_dataset_builder(hub.path, hub.name, revision=hub.revision)
    except Exception as err:  # offline, missing, private: every cause gets the same three fixes
        if "scripts are no longer supported" in str(err):
            raise ConfigError(f"task {task.name!r}: hub dataset {hub.path!r} is published with a loading script, which "
                              f"datasets {datasets.__version__} does not run; export its splits to <split>.jsonl files "
                              f"in the unified schema {_schema(task)} and set task.data_dir=DIR") from None
        raise ConfigError(
            f"task {task.name!r}: cannot reach hub dataset {hub.path!r} ({type(err).__name__}: {err}). "
            f"Fix one of: (1) go online or fill the HF datasets cache, then rerun; "
            f"(2) point task.data_dir (or LSGBENCH_DATA_DIR=<root> with <root>/{task.name}/) at "
            f"<split>.jsonl files in the unified schema {_schema(task)}; "
            f"(3) use a built-in synthetic task (task=synth_keys or task=synth_extract)."
        ) from None
    to_source = dict(task.splits)
    available = [s for s, src in to_source.items() if src in (builder.info.splits or {})] or list(to_source)

    def read(split):
        ds = datasets.load_dataset(hub.path, hub.name, revision=hub.revision, split=to_source[split])
        names = getattr(ds.features.get(task.columns.get("label", "")), "names", None)
        if names and task.label_names and list(names) != list(task.label_names):
            raise ConfigError(f"{source}: the dataset's label names {names} differ from task.label_names {list(task.label_names)}")
        unified = {ours: theirs for ours, theirs in task.columns.items()}
        missing = [c for c in unified.values() if c not in ds.column_names]
        if missing:
            raise ConfigError(f"{source} split {split!r} has no column(s) {missing} (task.columns); it has {ds.column_names}")
        return [{"id": r.get("id", f"{split}-{i}"), **{ours: r[theirs] for ours, theirs in unified.items()}}
                for i, r in enumerate(ds)]

    return source, available, read


def _carve(train: list[dict], splits: list[str], fraction: float, train_split: str) -> dict[str, list[dict]]:
    """Fixed-seed slices of train for the missing splits; train keeps the rest."""
    if not 0 < fraction < 0.5:
        raise ConfigError(f"task.carve_fraction={fraction} must be in (0, 0.5)")
    order = list(range(len(train)))
    random.Random(CARVE_SEED).shuffle(order)
    size = max(1, int(fraction * len(train)))
    out, taken = {}, set()
    for split in splits:
        k = CARVE_ORDER.index(split)
        idx = order[k * size : (k + 1) * size]
        out[split] = [train[i] for i in idx]
        taken.update(idx)
    out[train_split] = [r for i, r in enumerate(train) if i not in taken]
    return out


def _schema(task) -> str:
    kind = task_kind(task)
    return f"{{'id', {kind.text_column!r}, {kind.target_column!r}}}"


def _validated(task, rows: list[dict], where: str) -> list[dict]:
    """Rows in the unified schema with their targets as the task kind uses them; clear errors for
    missing columns, empty text and bad targets."""
    if not rows:
        raise ConfigError(f"{where} has no examples")
    kind = task_kind(task)
    out, empty, seen = [], [], set()
    for i, row in enumerate(rows):
        for col in (kind.text_column, kind.target_column):
            if col not in row:
                raise ConfigError(f"{where}: example {row.get('id', i)!r} has no {col!r} column; the "
                                  f"{kind.name} schema is {_schema(task)}, got {sorted(row)}")
        rid = str(row.get("id", i))
        if rid in seen:
            raise ConfigError(f"{where}: the id {rid!r} appears more than once; ids must be unique within a split")
        seen.add(rid)
        text = row[kind.text_column]
        if not isinstance(text, str) or not text.strip():
            empty.append(rid)
            continue
        out.append({"id": rid, kind.text_column: text,
                    kind.target_column: kind.target(row[kind.target_column], task, where, rid)})
    if empty:
        raise ConfigError(f"{where}: {len(empty)} example(s) have an empty {kind.text_column!r} (or one that is not a string), "
                          f"e.g. ids {empty[:5]}; remove or fill them")
    return out


def _subsample(rows: list[dict], limit, knob: str) -> list[dict]:
    """For quick runs only: the first `limit` rows after a fixed-seed shuffle."""
    if limit is None or limit >= len(rows):
        return rows
    if limit < 1:
        raise ConfigError(f"{knob}={limit} must be a positive integer or null")
    order = list(range(len(rows)))
    random.Random(CARVE_SEED).shuffle(order)
    return [rows[i] for i in sorted(order[:limit])]


# ---------------------------------------------------------------- tokenization

def rows_fingerprint(rows: list) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        state = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    else:  # truncation and padding are call-time settings the tokenizer stores on itself
        state = json.dumps({k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")},
                           sort_keys=True)
    return hashlib.sha256(state.encode()).hexdigest()[:16]


def tokenize(rows: list[dict], tokenizer, task, max_length: int, cache_dir: str | Path | None):
    """A datasets.Dataset with input_ids, attention_mask, labels; cached under an explicit key."""
    import datasets

    datasets.disable_progress_bars()
    kind = task_kind(task)
    key = hashlib.sha256(json.dumps([
        rows_fingerprint(rows), tokenizer_fingerprint(tokenizer), kind.name, max_length, task.max_target_length,
        PREPROCESS_VERSION,
    ]).encode()).hexdigest()[:24]
    path = Path(cache_dir) / "tokenized" / key if cache_dir else None
    if path is not None and (path / "dataset_info.json").exists():
        return datasets.load_from_disk(str(path))

    texts = [r[kind.text_column] for r in rows]
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    enc["input_length"] = [len(ids) for ids in tokenizer(texts, verbose=False)["input_ids"]]  # before truncation
    enc["labels"], target_lengths = kind.encode_targets(tokenizer, rows, task)
    columns = ["input_ids", "attention_mask", "labels", "input_length"]
    if target_lengths is not None:
        enc["target_length"] = target_lengths
        columns.append("target_length")
    ds = datasets.Dataset.from_dict({k: enc[k] for k in columns})
    if path is not None:
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        ds.save_to_disk(str(tmp))
        try:
            os.replace(tmp, path)  # atomic: a concurrent writer of the same key wrote the same bytes
        except OSError:  # another process cached the same key first
            shutil.rmtree(tmp, ignore_errors=True)
        ds = datasets.load_from_disk(str(path if path.exists() else tmp))
    return ds


def truncation(ds, max_length: int, max_target_length: int | None) -> dict:
    """What the length limits cut from a tokenized split: how many inputs (and targets) were longer,
    and the mean share of tokens dropped over all examples."""
    out = {"examples": len(ds)}
    for what, column, limit in (("inputs", "input_length", max_length), ("targets", "target_length", max_target_length)):
        if column in ds.column_names and limit:
            lengths = ds[column]
            out[f"{what}_truncated"] = sum(n > limit for n in lengths)
            out[f"{what}_dropped_fraction"] = sum(max(n - limit, 0) / n for n in lengths if n) / len(lengths)
    return out
