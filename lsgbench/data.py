"""Task data: resolve the source, read rows in the unified schema, tokenize with a cache.

Source order: `task.data_dir` (or `$LSGBENCH_DATA_DIR/<task.name>`) when given, since the user
named it; otherwise the hub dataset, or the built-in generator for `source: synthetic` tasks.
Tasks with `source: local` (the generic `classification` and `summarization`) need the folder.
A task with `byte_splits` (enwik8) cuts its splits from one stream, the source's train split, by byte offsets.
Unified schema: classification {"id", "text", "label"}, summarization {"id", "article", "abstract"}.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError
from .kinds import task_kind
from .synthetic import synthetic_rows

log = logging.getLogger(__name__)

# Bump when tokenization changes, so cached tokenized datasets are rebuilt.
PREPROCESS_VERSION = 3
CARVE_SEED = 0  # carving and subsampling use a fixed seed: the data is the same for every run seed
CARVE_ORDER = ("validation", "test")  # the splits that can be carved from train
VALIDATION_NAMES = ("validation", "val", "valid", "dev")  # local files read as the validation split


@dataclass
class TaskData:
    train: list[dict]
    eval: list[dict]
    source: str  # provenance: "local:<dir>", "hub:<path>[/<name>]@<revision>" or "synthetic:<generator>"
    notes: list[str] = field(default_factory=list)
    splits: dict[str, str] = field(default_factory=dict)  # what train and eval were read from (a file, a hub split)
    eval_overlap: int = 0  # evaluation examples whose content is also in training (task.allow_eval_overlap)
    eval_shared_documents: int = 0  # evaluation examples whose document (another question on it) is in training

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


def load_task_data(task, evaluate_only: bool = False) -> TaskData:
    """Read the train and eval splits of a task, validated and subsampled as configured. An evaluation
    example whose content is also in training is refused unless task.allow_eval_overlap. `evaluate_only` (a run
    that trains nothing): the evaluation split alone, whole (nothing carved), and no training split."""
    kind = task_kind(task)
    data_dir = local_data_dir(task)
    notes = []  # for the record; each is logged too

    def note(text: str, level: int = logging.INFO) -> None:
        notes.append(text)
        log.log(level, text)

    if data_dir is not None:
        source = f"local:{data_dir}"
        files, ignored = _local_splits(data_dir, (task.train_split, task.eval_split))
        if ignored:
            note(f"{data_dir} holds {ignored}, which lsgbench does not read (split files: train.jsonl, test.jsonl, "
                 f"validation.jsonl or {'/'.join(VALIDATION_NAMES[1:])}.jsonl, or the file task.train_split / "
                 f"task.eval_split name)", logging.WARNING)
        available, origin = list(files), dict(files)
        read = lambda split: _read_jsonl(data_dir / files[split])  # noqa: E731
    elif task.source == "local":
        raise ConfigError(f"task {task.name!r} reads a local folder: set task.data_dir=DIR (or LSGBENCH_DATA_DIR=ROOT "
                          f"with ROOT/{task.name}/) holding <split>.jsonl files in the unified schema {_schema(task)}")
    elif task.source == "synthetic":
        source = f"synthetic:{task.synthetic.generator}(seed={task.synthetic.seed})"
        available = [s for s in task.splits if task.synthetic.get(f"n_{s}")]
        origin = {s: f"generated {s}" for s in available}
        read = lambda split: synthetic_rows(task, split, task.synthetic[f"n_{split}"])  # noqa: E731
    elif task.source == "hub":
        source, available, read = _hub_reader(task)
        origin = {s: f"hub split {task.splits[s]}" for s in available}
    else:
        raise ConfigError(f"task.source={task.source!r} is unknown; choose local, hub or synthetic")
    if task.get("byte_splits"):
        available, origin, read = _byte_splits(task, source, available, origin, read, note)

    train_split, eval_split = task.train_split, task.eval_split
    if evaluate_only:
        return _evaluation_only(task, source, available, origin, read, note, notes)
    if train_split not in available:
        carved = "test" if available[0] == "validation" else "validation"
        hint = (f" (to train on it and evaluate on a part carved from it: task.train_split={available[0]} "
                f"task.eval_split={carved})") if len(available) == 1 else ""
        raise ConfigError(f"{source} has no {train_split!r} split; it has {sorted(available)}{hint}")
    eval_split = _test_or_validation(eval_split, train_split, available, source, origin, note)
    if eval_split not in available and eval_split not in CARVE_ORDER:
        raise ConfigError(f"{source} has no {eval_split!r} split (it has {sorted(available)}), and only "
                          f"{list(CARVE_ORDER)} can be carved from {train_split!r}")
    train = _validated(task, read(train_split), f"{source} {train_split}")
    if eval_split == train_split:
        evals = train
    elif eval_split in available:
        evals = _validated(task, read(eval_split), f"{source} {eval_split}")
    else:  # carved: held-out rows of train, every row of a document (and so every copy of a text) on one side
        train, evals = _carve(train, eval_split, task.carve_fraction, lambda row: document_key(kind, row))
        note(f"carved {eval_split!r} from {train_split!r} ({task.carve_fraction:.0%}, seed {CARVE_SEED})")
        origin[eval_split] = f"carved from {origin[train_split]} ({task.carve_fraction:.0%}, seed {CARVE_SEED})"
    train = _subsample(train, task.max_train_samples)
    evals = _subsample(evals, task.max_eval_samples)
    if not evals:  # a carved split of a very small train split
        raise ConfigError(f"{source}: no evaluation examples are left ({origin[eval_split]}); give more data or an "
                          f"evaluation split of its own")
    if not train:
        raise ConfigError(f"{source}: no training examples are left after carving {eval_split!r} from {train_split!r}")
    overlap = _overlap(task, kind, train, evals, train_split, eval_split)
    train_documents = {document_key(kind, r) for r in train}
    shared = sum(document_key(kind, r) in train_documents for r in evals)
    if shared > overlap:
        note(f"{shared} of {len(evals)} evaluation examples read a document that training examples read too (other "
             f"questions on it: what is learnt of the document carries over)", logging.WARNING)
    return TaskData(train=train, eval=evals, source=source, notes=notes,
                    splits={"train": origin[train_split], "eval": origin[eval_split]}, eval_overlap=overlap,
                    eval_shared_documents=shared)


def _evaluation_only(task, source, available, origin, read, note, notes) -> TaskData:
    """The evaluation split of a run that trains nothing, read whole (nothing to carve it from or to overlap)."""
    eval_split = _test_or_validation(task.eval_split, None, available, source, origin, note)
    if eval_split not in available:
        raise ConfigError(f"{source} has no {eval_split!r} split to evaluate (it has {sorted(available)}): an "
                          f"evaluation-only run (trainer.trainable=none) reads one split whole; set "
                          f"task.eval_split to one of them")
    evals = _subsample(_validated(task, read(eval_split), f"{source} {eval_split}"), task.max_eval_samples)
    if not evals:
        raise ConfigError(f"{source} {eval_split}: no evaluation examples")
    note(f"evaluation only (trainer.trainable=none): {eval_split!r} read whole, no training split")
    return TaskData(train=[], eval=evals, source=source, notes=notes,
                    splits={"train": None, "eval": origin[eval_split]}, eval_overlap=0)


def _test_or_validation(eval_split, train_split, available, source, origin, note) -> str:
    """The split to evaluate: a source without a test split is evaluated on its validation split, unless that is the
    training split (then test is carved from it)."""
    if eval_split == "test" and eval_split not in available and "validation" in available \
            and train_split != "validation":
        note(f"{source} has no 'test' split: evaluating on 'validation' ({origin['validation']})", logging.WARNING)
        return "validation"
    return eval_split


def document_key(kind, row: dict) -> bytes:
    """A fingerprint of the document an example reads (`TaskKind.document`)."""
    return hashlib.sha256(kind.document(row).encode()).digest()[:16]


def content_key(kind, row: dict, task) -> bytes:
    """A fingerprint of what an example asks (`TaskKind.content`): equal for copies of one text."""
    return hashlib.sha256(kind.content(row, task).encode()).digest()[:16]


def _overlap(task, kind, train: list[dict], evals: list[dict], train_split: str, eval_split: str) -> int:
    """How many evaluation examples have the content of a training example; refused unless allowed."""
    seen = {content_key(kind, r, task): r["id"] for r in train}
    shared = [(r["id"], seen[key]) for r in evals if (key := content_key(kind, r, task)) in seen]
    if not shared or task.allow_eval_overlap:
        return len(shared)
    fix = "set task.allow_eval_overlap=true to run it anyway (the record and the report then say so)"
    if train_split == eval_split:
        raise ConfigError(f"task.train_split and task.eval_split are both {train_split!r}: the run would evaluate "
                          f"on the examples it trains on. Evaluate on a held-out split (task.eval_split=validation "
                          f"carves one from it), or {fix}")
    eval_id, train_id = shared[0]
    raise ConfigError(f"{len(shared)} of {len(evals)} evaluation examples ({eval_split}) have the "
                      f"{' and '.join(repr(c) for c in kind.input_columns(task))} of a training example ({train_split}), e.g. eval id {eval_id!r} = train id {train_id!r}. "
                      f"Remove them from one split, or {fix}")


def _local_splits(data_dir: Path, named: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """({split: file name} of the split files in `data_dir`, the .jsonl files it does not read); val, valid
    and dev are read as validation, and any file a split is named after (`named`) as that split."""
    if not data_dir.is_dir():
        raise ConfigError(f"task.data_dir={str(data_dir)!r} is not a directory")
    stems = sorted(p.stem for p in data_dir.glob("*.jsonl"))
    if not stems:
        raise ConfigError(f"task.data_dir={str(data_dir)!r} holds no <split>.jsonl files (e.g. train.jsonl, test.jsonl)")
    validation = [s for s in VALIDATION_NAMES if s in stems]
    if len(validation) > 1:
        raise ConfigError(f"task.data_dir={str(data_dir)!r} holds {[f'{s}.jsonl' for s in validation]}, which are all "
                          f"the validation split; keep one")
    files = {s: f"{s}.jsonl" for s in stems if s in ("train", "test", *named)}
    if validation:
        files["validation"] = f"{validation[0]}.jsonl"
    ignored = [f"{s}.jsonl" for s in stems if f"{s}.jsonl" not in files.values()]
    return files, ignored


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
    # a split may be a slice of the source's (train[:500]: datasets' syntax)
    available = [s for s, src in to_source.items() if src.split("[")[0] in (builder.info.splits or {})] or list(to_source)

    def read(split):
        ds = datasets.load_dataset(hub.path, hub.name, revision=hub.revision, split=to_source[split])
        names = getattr(ds.features.get(task.columns.get("label", "")), "names", None)
        if names and task.get("label_names") and list(names) != list(task.label_names):
            raise ConfigError(f"{source}: the dataset's label names {names} differ from task.label_names {list(task.label_names)}")
        unified = {ours: theirs for ours, theirs in task.columns.items()}
        missing = [c for c in unified.values() if c not in ds.column_names]
        if missing:
            raise ConfigError(f"{source} split {split!r} has no column(s) {missing} (task.columns); it has {ds.column_names}")
        return [{"id": r.get("id", f"{split}-{i}"), **{ours: r[theirs] for ours, theirs in unified.items()}}
                for i, r in enumerate(ds)]

    return source, available, read


def _byte_splits(task, source: str, available: list[str], origin: dict[str, str], read, note):
    """(splits, their origins, a reader) for splits cut from one stream by UTF-8 byte offsets, as enwik8's standard
    split is (its first 90M bytes train, the next 5M validation, the last 5M test). The stream is the text of the
    source's train split, its documents joined. An offset inside a character moves forward to the character's
    start (at most 3 bytes), with a note, so every split decodes to exactly its bytes; the origins name the bytes
    read. A split set to null is left out."""
    spans = {}
    for split, span in task.byte_splits.items():
        if span is None:
            continue
        span = list(span) if isinstance(span, Iterable) and not isinstance(span, str) else [span]
        if not (len(span) == 2 and all(type(x) is int and x >= 0 for x in span) and span[0] < span[1]):
            raise ConfigError(f"task.byte_splits.{split}={span} must be [start, end]: byte offsets with "
                              f"0 <= start < end (or null to leave the split out)")
        spans[split] = tuple(span)
    ordered = sorted(spans.items(), key=lambda item: item[1])
    for (first, (_, end)), (second, (start, _)) in zip(ordered, ordered[1:]):
        if start < end:
            raise ConfigError(f"task.byte_splits: {first} {list(spans[first])} and {second} {list(spans[second])} "
                              f"overlap; a byte belongs to one split")
    if "train" not in available:
        raise ConfigError(f"{source} has no 'train' split to cut task.byte_splits from; it has {sorted(available)}")
    whole = origin["train"]
    data = "".join(row["text"] for row in read("train")).encode("utf-8")
    note(f"{source} ({whole}) is one stream of {len(data):,} bytes, cut by task.byte_splits")
    cuts = {}
    for split, (start, end) in spans.items():
        if len(data) < end:
            raise ConfigError(f"task.byte_splits.{split}={[start, end]} reaches byte {end:,}, but {source} ({whole}) "
                              f"holds {len(data):,} bytes (an override of task.byte_splits keeps the task's other "
                              f"splits: give each, or set one to null to leave it out)")
        cuts[split] = _char_start(data, start), _char_start(data, end)
        if cuts[split] != (start, end):
            note(f"task.byte_splits.{split}: {[start, end]} falls inside a UTF-8 character; read as "
                 f"{list(cuts[split])}, whole characters")
        if cuts[split][0] == cuts[split][1]:
            raise ConfigError(f"task.byte_splits.{split}={[start, end]} holds no whole UTF-8 character")

    def cut(split: str) -> list[dict]:
        start, end = cuts[split]
        return [{"id": f"{task.name}-{split}", "text": data[start:end].decode("utf-8")}]

    return list(cuts), {s: f"bytes {a:,}-{b:,} of {whole}" for s, (a, b) in cuts.items()}, cut


def _char_start(data: bytes, offset: int) -> int:
    """The first offset at or after `offset` that starts a UTF-8 character (continuation bytes are 0b10xxxxxx)."""
    while offset < len(data) and data[offset] & 0xC0 == 0x80:
        offset += 1
    return offset


def _carve(train: list[dict], split: str, fraction: float, document) -> tuple[list[dict], list[dict]]:
    """(train less the carved rows, a fixed-seed share of train as `split`); a row that is carved takes every
    other row of the same `document` (a key) along, so carving never puts one document on both sides."""
    order = list(range(len(train)))
    random.Random(CARVE_SEED).shuffle(order)
    size = max(1, int(fraction * len(train)))
    k = CARVE_ORDER.index(split)  # validation and test take different slices: carving both keeps them apart
    carved = {document(train[i]) for i in order[k * size : (k + 1) * size]}
    return [r for r in train if document(r) not in carved], [r for r in train if document(r) in carved]


def _schema(task) -> str:
    return "{" + ", ".join(repr(c) for c in ("id", *task_kind(task).columns(task))) + "}"


def _validated(task, rows: list[dict], where: str) -> list[dict]:
    """Rows in the unified schema with their targets as the task kind uses them; clear errors for
    missing columns, empty texts and bad targets."""
    if not rows:
        raise ConfigError(f"{where} has no examples")
    kind = task_kind(task)
    inputs, target = kind.input_columns(task), kind.target_column  # the document (and what comes with it), the target
    texts = kind.text_columns(task)  # those that must hold text
    out, seen = [], set()
    empty: dict[str, list[str]] = {}  # text column -> ids of rows where it is empty
    for i, row in enumerate(rows):
        for col in kind.columns(task):
            if col not in row:
                raise ConfigError(f"{where}: example {row.get('id', i)!r} has no {col!r} column; the "
                                  f"{kind.name} schema is {_schema(task)}, got {sorted(row)}")
        rid = str(row.get("id", i))
        if rid in seen and kind.unique_ids:
            raise ConfigError(f"{where}: the id {rid!r} appears more than once; ids must be unique within a split")
        seen.add(rid)
        if blank := [c for c in texts if not isinstance(row[c], str) or not row[c].strip()]:
            for col in blank:
                empty.setdefault(col, []).append(rid)
            continue
        out.append({"id": rid, **{c: row[c] for c in inputs},
                    **({target: kind.target(row[target], task, where, rid, row)} if target else {})})
    for col, ids in empty.items():
        raise ConfigError(f"{where}: {len(ids)} example(s) have an empty {col!r} (or one that is not a string), "
                          f"e.g. ids {ids[:5]}; remove or fill them")
    return out


def _subsample(rows: list[dict], limit: int | None) -> list[dict]:
    """For quick runs only: the first `limit` rows after a fixed-seed shuffle."""
    if limit is None or limit >= len(rows):
        return rows
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
    """A datasets.Dataset of the task kind's features of `rows` (`TaskKind.encode`), cached under an explicit key."""
    import datasets

    datasets.disable_progress_bars()
    kind = task_kind(task)
    key = hashlib.sha256(json.dumps([
        rows_fingerprint(rows), tokenizer_fingerprint(tokenizer), kind.name, max_length, kind.encoding(task),
        PREPROCESS_VERSION,
    ]).encode()).hexdigest()[:24]
    path = Path(cache_dir) / "tokenized" / key if cache_dir else None
    if path is not None and (path / "dataset_info.json").exists():
        return datasets.load_from_disk(str(path))

    ds = datasets.Dataset.from_dict(kind.encode(rows, tokenizer, task, max_length))
    if path is not None:
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        ds.save_to_disk(str(tmp))
        try:
            os.replace(tmp, path)  # atomic: a concurrent writer of the same key wrote the same bytes
        except OSError:  # another process cached the same key first
            shutil.rmtree(tmp, ignore_errors=True)
        ds = datasets.load_from_disk(str(path if path.exists() else tmp))
    return ds
