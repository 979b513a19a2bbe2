"""Row readers, a registry keyed by the spec's `format`. Each turns a source into a list of plain dict rows; the
dataset layer maps the spec's fields onto them, so a new format is one function here."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import SnError
from .spec import DatasetSpec

Rows = list[dict]
READERS: dict[str, Callable[[DatasetSpec], Rows]] = {}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def reader(name: str):
    def deco(fn: Callable[[DatasetSpec], Rows]):
        READERS[name] = fn
        return fn

    return deco


def read_rows(spec: DatasetSpec) -> Rows:
    try:
        read = READERS[spec.format]
    except KeyError:
        raise SnError(f"dataset {spec.name}: unknown format {spec.format!r} (known: {sorted(READERS)})") from None
    return read(spec)


def _source_file(spec: DatasetSpec) -> Path:
    path = spec.resolve(spec.source)
    if not path.is_file():
        raise SnError(f"dataset {spec.name}: source file {path} not found")
    return path


@reader("jsonl")
def read_jsonl(spec: DatasetSpec) -> Rows:
    rows = []
    with open(_source_file(spec), encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise SnError(f"dataset {spec.name}: {spec.source} line {lineno}: invalid JSON ({exc.msg})") from None
    return rows


def _read_delimited(spec: DatasetSpec, delimiter: str) -> Rows:
    csv.field_size_limit(sys.maxsize)  # VLMEvalKit TSVs carry whole base64 images in one field
    with open(_source_file(spec), encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter=delimiter))


@reader("csv")
def read_csv(spec: DatasetSpec) -> Rows:
    return _read_delimited(spec, ",")


@reader("tsv")
def read_tsv(spec: DatasetSpec) -> Rows:
    return _read_delimited(spec, "\t")


@reader("parquet")
def read_parquet(spec: DatasetSpec) -> Rows:
    import pyarrow.parquet as pq

    return pq.read_table(_source_file(spec)).to_pylist()


@reader("folder")
def read_folder(spec: DatasetSpec) -> Rows:
    """`source/<class>/<image>`: the sub-folder names the label; the question comes from `question_template`."""
    root = spec.resolve(spec.source)
    if not root.is_dir():
        raise SnError(f"dataset {spec.name}: source folder {root} not found")
    rows = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        for img in sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            rows.append({"id": f"{sub.name}/{img.name}", "image": str(img), "answer": sub.name})
    return rows


@reader("synthetic")
def read_synthetic(spec: DatasetSpec) -> Rows:
    from .synthetic import generate

    return generate(spec.source, seed=spec.seed, **spec.params)


@reader("hf")
def read_hf(spec: DatasetSpec) -> Rows:
    """A Hugging Face `datasets` dataset by hub id or local path; `params` go to `load_dataset` (e.g. split)."""
    try:
        import datasets
    except ImportError:
        raise SnError(f"dataset {spec.name}: format 'hf' needs the `datasets` package (pip install datasets)") from None
    params = {"split": "test", **spec.params}
    return list(datasets.load_dataset(spec.source, **params))
