"""The dataset registry: specs kept in the workspace (`$SN_HOME/datasets/<name>.yaml`), each recorded with its
content hash in the DuckDB `datasets` table. `reprobe` probes the registered specs (see `pipeline.probe_status`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml

from . import leaderboard
from .datasets import DatasetSpec, builtin_specs, load_dataset, resolve_spec
from .errors import SnError
from .workspace import subdir


def check_name(name: str, builtin_by_name: bool = False) -> None:
    """A registered spec may not take a built-in spec's name, except the built-in itself added by its name, usually
    with --source (`sn datasets add pope --source ~/data/POPE`), which then takes its place."""
    if name in builtin_specs() and not builtin_by_name:
        raise SnError(f"dataset name {name!r} is a built-in spec's: give your spec another `name:` (to register the "
                      f"built-in with your copy of its data: `sn datasets add {name} --source PATH`)")


def add_dataset(spec_file: str | Path, db: str | None = None, source: str | None = None) -> tuple[DatasetSpec, str]:
    """Validate a spec (every sample is read), record its hash, keep a copy in the workspace; returns (spec, hash).
    Adding a spec of an existing name replaces it (that is how a dataset is changed). `spec_file` may also be a
    built-in name, and `source` points the spec at another copy of its data."""
    spec = resolve_spec(str(spec_file), source)
    check_name(spec.name, builtin_by_name=str(spec_file) == spec.name)
    ds = load_dataset(spec)
    data = {**spec.public_dict(), "base_dir": str(Path(spec.base_dir).resolve())}
    text = yaml.safe_dump(data, sort_keys=False)
    # The row first, the copy last: the copy is what makes a dataset registered (what `reprobe` and names read), so
    # a run killed in between leaves it unregistered (or as it was), and running the same command again repairs it.
    con = leaderboard.connect(db)
    try:
        con.execute("INSERT OR REPLACE INTO datasets VALUES (?, ?, ?, ?)",
                    [spec.name, text, ds.content_hash, datetime.now(UTC).replace(tzinfo=None)])
    finally:
        con.close()
    target = subdir("datasets") / f"{spec.name}.yaml"
    tmp = target.with_suffix(".yaml.tmp")
    tmp.write_text(text)
    tmp.replace(target)
    return spec, ds.content_hash


def registered_specs() -> dict[str, Path]:
    folder = subdir("datasets")
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}
