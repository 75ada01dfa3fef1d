"""A run's trained model as an artifact: saved into its run dir, named in its record with a fingerprint of the
weights, and loaded by later runs with `model.pretrained=run:<run_id>` (or the directory's path).

The fingerprint keys reuse: a run on a checkpoint directory that was trained again in place is another run,
and `run:<id>` refuses a directory whose weights are no longer the ones that run saved.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..errors import ConfigError
from ..record import apply_umask

RUN_PREFIX = "run:"
WEIGHT_FILES = ("*.safetensors", "*.bin")


def fingerprint(directory: str | Path) -> str | None:
    """A hash of a checkpoint directory's weight files (their names and bytes); None when it holds none (a hub id,
    a directory without weights)."""
    directory = Path(directory)
    files = sorted(f for pattern in WEIGHT_FILES for f in directory.glob(pattern)) if directory.is_dir() else []
    if not files:
        return None
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        with open(file, "rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def save(model, tokenizer, directory: Path) -> dict:
    """Save a trained model and its tokenizer (a converted model with its knobs, as `python -m lsgbench.convert`
    does); returns what the record says of it: {path, fingerprint}. The path is relative to the working
    directory when it lies below it, so records name no machine's root."""
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    for file in directory.iterdir():
        if file.is_file():
            apply_umask(file)
    path = Path(os.path.relpath(directory.resolve(), Path.cwd())) if directory.resolve().is_relative_to(Path.cwd()) \
        else directory.resolve()
    return {"path": str(path), "fingerprint": fingerprint(directory)}


def resolve(pretrained: str | None, store_dir: str | Path) -> tuple[str | None, dict]:
    """(the checkpoint `model.pretrained` names, with `run:<run_id>` replaced by the directory that run saved;
    provenance: the run and the weights' fingerprint). A ConfigError says what is missing."""
    if not pretrained or not str(pretrained).startswith(RUN_PREFIX):
        found = fingerprint(pretrained) if pretrained and Path(pretrained).expanduser().is_dir() else None
        return pretrained, ({"pretrained_fingerprint": found} if found else {})
    run_id = pretrained[len(RUN_PREFIX):]
    path = Path(store_dir) / f"{run_id}.json"
    if not run_id or not path.is_file():
        raise ConfigError(f"model.pretrained={pretrained!r}: paths.store_dir={str(store_dir)!r} holds no run "
                          f"{run_id!r} (its records are <run_id>.json files)")
    record = json.loads(path.read_text())
    artifact = record.get("artifact")
    if not artifact:
        if record.get("status") != "ok":
            raise ConfigError(f"model.pretrained={pretrained!r}: run {run_id} ended {record.get('status')} and kept no "
                              f"model ({record.get('error')}); fix that and rerun it")
        raise ConfigError(f"model.pretrained={pretrained!r}: run {run_id} kept no model; rerun it with save_model=true")
    if not Path(artifact["path"]).is_dir():
        raise ConfigError(f"model.pretrained={pretrained!r}: the model run {run_id} saved, {artifact['path']!r}, is "
                          f"gone (a relative path is read from the working directory)")
    found = fingerprint(artifact["path"])
    if found != artifact["fingerprint"]:
        raise ConfigError(f"model.pretrained={pretrained!r}: the weights in {artifact['path']!r} (fingerprint {found}) "
                          f"are not the ones run {run_id} saved ({artifact['fingerprint']}); something wrote over them")
    return artifact["path"], {"pretrained_run": run_id, "pretrained_fingerprint": found,
                              "pretrained_max_length": record.get("max_length")}
