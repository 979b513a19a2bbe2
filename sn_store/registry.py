"""The dataset registry: specs kept in the workspace (`$SN_HOME/datasets/<name>.yaml`), each with its content hash
in the DuckDB `datasets` table, so that re-probing can tell new and changed datasets from the rest."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml

from . import leaderboard
from .datasets import DatasetSpec, load_dataset, load_spec_file, resolve_spec
from .workspace import subdir


def add_dataset(spec_file: str | Path, db: str | None = None, source: str | None = None) -> tuple[DatasetSpec, str]:
    """Validate a spec (every sample is read), keep a copy in the workspace, record its hash; returns (spec, hash).
    Adding a spec of an existing name replaces it (that is how a dataset is changed). `spec_file` may also be a
    built-in name, and `source` points the spec at another copy of its data."""
    spec = resolve_spec(str(spec_file), source)
    ds = load_dataset(spec)
    data = {**spec.public_dict(), "base_dir": str(Path(spec.base_dir).resolve())}
    target = subdir("datasets") / f"{spec.name}.yaml"
    tmp = target.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    tmp.replace(target)
    con = leaderboard.connect(db)
    try:
        con.execute("INSERT OR REPLACE INTO datasets VALUES (?, ?, ?, ?)",
                    [spec.name, target.read_text(), ds.content_hash, datetime.now(UTC).replace(tzinfo=None)])
    finally:
        con.close()
    return spec, ds.content_hash


def registered_specs() -> dict[str, Path]:
    folder = subdir("datasets")
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def current_hash(name: str) -> str:
    """The content hash of a registered dataset as its files are now."""
    return load_dataset(load_spec_file(registered_specs()[name])).content_hash


def needs_probe(db: str | None, model: str, name: str, content_hash: str) -> bool:
    """True when `model` has no run on dataset `name`, or its latest run saw other content."""
    con = leaderboard.connect(db)
    try:
        rows = con.execute("SELECT dataset_hash FROM runs WHERE model = ? AND dataset = ? "
                           "ORDER BY created_at DESC LIMIT 1", [model, name]).fetchall()
    finally:
        con.close()
    return not rows or rows[0][0] != content_hash
