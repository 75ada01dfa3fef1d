"""Task data: resolve the source, read rows in the unified schema, tokenize with a cache.

Source order: `task.data_dir` (or `$LSGBENCH_DATA_DIR/<task.name>`) when given, since the user
named it; otherwise the hub dataset, or the built-in generator for `source: synthetic` tasks.
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
from .synthetic import synthetic_rows

log = logging.getLogger(__name__)

# Bump when tokenization changes, so cached tokenized datasets are rebuilt.
PREPROCESS_VERSION = 1
CARVE_SEED = 0  # carving and subsampling use a fixed seed: the data is the same for every run seed
CARVE_ORDER = ("validation", "test")
COLUMNS = {"classification": ("text", "label"), "summarization": ("article", "abstract")}


@dataclass
class TaskData:
    train: list[dict]
    eval: list[dict]
    source: str  # provenance: "local:<dir>", "hub:<path>[/<name>]@<revision>" or "synthetic:<generator>"
    notes: list[str] = field(default_factory=list)


def local_data_dir(task) -> Path | None:
    if task.data_dir:
        return Path(task.data_dir).expanduser()
    root = os.environ.get("LSGBENCH_DATA_DIR")
    if root and (Path(root) / task.name).is_dir():
        return Path(root) / task.name
    return None


def load_task_data(task) -> TaskData:
    """Read the train and eval splits of a task, validated and subsampled as configured."""
    if task.kind not in COLUMNS:
        raise ConfigError(f"task.kind={task.kind!r} is unknown; choose one of {sorted(COLUMNS)}")
    wanted = [task.train_split, task.eval_split]
    data_dir = local_data_dir(task)
    if data_dir is not None:
        source = f"local:{data_dir}"
        available = _local_splits(data_dir)
        read = lambda split: _read_jsonl(data_dir / f"{split}.jsonl")  # noqa: E731
    elif task.source == "synthetic":
        source = f"synthetic:{task.synthetic.generator}(seed={task.synthetic.seed})"
        available = [s for s in task.splits if task.synthetic.get(f"n_{s}")]
        read = lambda split: synthetic_rows(task, split, task.synthetic[f"n_{split}"])  # noqa: E731
    elif task.source == "hub":
        source, available, read = _hub_reader(task)
    else:
        raise ConfigError(f"task.source={task.source!r} is unknown; choose hub or synthetic")

    if task.train_split not in available:
        raise ConfigError(f"{source} has no {task.train_split!r} split; it has {sorted(available)}")
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
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
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
        raise ConfigError(
            f"task {task.name!r}: cannot reach hub dataset {hub.path!r} ({type(err).__name__}: {err}). "
            f"Fix one of: (1) go online or fill the HF datasets cache, then rerun; "
            f"(2) point task.data_dir (or LSGBENCH_DATA_DIR=<root> with <root>/{task.name}/) at "
            f"<split>.jsonl files in the unified schema {{'id', {', '.join(map(repr, COLUMNS[task.kind]))}}}; "
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


def _validated(task, rows: list[dict], where: str) -> list[dict]:
    """Rows in the unified schema with int labels; clear errors for missing columns, bad labels, empty text."""
    if not rows:
        raise ConfigError(f"{where} has no examples")
    text_col, target_col = COLUMNS[task.kind]
    out, empty = [], []
    for i, row in enumerate(rows):
        for col in (text_col, target_col):
            if col not in row:
                raise ConfigError(f"{where}: example {row.get('id', i)!r} has no {col!r} column; the "
                                  f"{task.kind} schema is {{'id', {text_col!r}, {target_col!r}}}, got {sorted(row)}")
        rid = str(row.get("id", i))
        text = row[text_col]
        if not isinstance(text, str) or not text.strip():
            empty.append(rid)
            continue
        target = row[target_col]
        if task.kind == "classification":
            target = _label_index(target, task.label_names, where, rid)
        elif not isinstance(target, str) or not target.strip():
            empty.append(rid)
            continue
        out.append({"id": rid, text_col: text, target_col: target})
    if empty:
        raise ConfigError(f"{where}: {len(empty)} example(s) have an empty {text_col!r} or {target_col!r}, "
                          f"e.g. ids {empty[:5]}; remove or fill them")
    return out


def _label_index(label, label_names, where: str, rid: str) -> int:
    names = list(label_names or [])
    if isinstance(label, bool) or isinstance(label, int):
        if 0 <= int(label) < len(names):
            return int(label)
    elif isinstance(label, str) and label in names:
        return names.index(label)
    raise ConfigError(f"{where}: example {rid!r} has label {label!r}, which is not one of task.label_names {names} "
                      f"(or an index into it)")


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

def rows_fingerprint(rows: list[dict]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        state = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    else:  # truncation and padding are call-time settings the tokenizer stores on itself
        state = json.dumps({k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")},
                           sort_keys=True)
    return hashlib.sha256(state.encode()).hexdigest()[:16]


def tokenize(rows: list[dict], tokenizer, kind: str, max_length: int, max_target_length: int | None,
             cache_dir: str | Path | None):
    """A datasets.Dataset with input_ids, attention_mask, labels; cached under an explicit key."""
    import datasets

    datasets.disable_progress_bars()
    key = hashlib.sha256(json.dumps([
        rows_fingerprint(rows), tokenizer_fingerprint(tokenizer), kind, max_length, max_target_length,
        PREPROCESS_VERSION,
    ]).encode()).hexdigest()[:24]
    path = Path(cache_dir) / "tokenized" / key if cache_dir else None
    if path is not None and (path / "dataset_info.json").exists():
        return datasets.load_from_disk(str(path))

    text_col, target_col = COLUMNS[kind]
    texts = [r[text_col] for r in rows]
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    if kind == "classification":
        enc["labels"] = [r[target_col] for r in rows]
    else:
        targets = tokenizer(text_target=[r[target_col] for r in rows], truncation=True, max_length=max_target_length)
        enc["labels"] = targets["input_ids"]
    ds = datasets.Dataset.from_dict({k: enc[k] for k in ("input_ids", "attention_mask", "labels")})
    if path is not None:
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        ds.save_to_disk(str(tmp))
        try:
            os.replace(tmp, path)  # atomic: a concurrent writer of the same key wrote the same bytes
        except OSError:  # another process cached the same key first
            shutil.rmtree(tmp, ignore_errors=True)
        ds = datasets.load_from_disk(str(path if path.exists() else tmp))
    return ds
