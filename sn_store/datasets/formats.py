"""Row readers, a registry keyed by the spec's `format`. Each turns a source into a list of plain dict rows and
declares its `params` as a pydantic model (unknown keys are errors); the dataset layer maps the spec's fields onto
the rows, so a new format is one function here (or in `benchmarks.py`, `vlmevalkit.py`)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import SnError
from .spec import DatasetSpec

Rows = list[dict]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SKIP = "_skip"  # a row holding this key (the reason) is left out and counted
ALLOWED = "_allowed"  # the classes (options) a row's question has, when fewer than the spec's classes


class MissingSplit(SnError):
    """The source has no such split (a caller may fall back to another)."""


class Params(BaseModel):
    """A format's `params`: none by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitParams(Params):
    """Formats whose sources have named splits (and, on the hub, configs)."""

    split: str = "test"
    config: str | None = None
    revision: str | None = None
    # Hub ids whose config differs from `config` (None: the default one), e.g. derek-thomas/ScienceQA, which has only
    # the default config where lmms-lab/ScienceQA names its subset ScienceQA-IMG.
    hub_configs: dict[str, str | None] = {}

    def for_source(self, source: str) -> SplitParams:
        """These params with the config that hub id `source` has."""
        return self.model_copy(update={"config": self.hub_configs[source]}) if source in self.hub_configs else self


@dataclass(frozen=True)
class Format:
    read: Callable[[DatasetSpec, Any], Rows]
    params: type[Params]


READERS: dict[str, Format] = {}


def reader(name: str, params: type[Params] = Params):
    def deco(fn: Callable[[DatasetSpec, Any], Rows]):
        READERS[name] = Format(fn, params)
        return fn

    return deco


def _format(spec: DatasetSpec) -> Format:
    try:
        return READERS[spec.format]
    except KeyError:
        raise SnError(f"dataset {spec.name}: unknown format {spec.format!r} (known: {sorted(READERS)})") from None


def has_splits(spec: DatasetSpec) -> bool:
    return "split" in _format(spec).params.model_fields


def format_params(spec: DatasetSpec, split: str | None = None) -> Params:
    fmt = _format(spec)
    data = {**spec.params, **({"split": split} if split is not None else {})}
    try:
        return fmt.params(**data)
    except ValidationError as exc:
        known = ", ".join(fmt.params.model_fields) or "none"
        errs = "; ".join(f"params.{'.'.join(map(str, e['loc']))}: "
                         f"{'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}" for e in exc.errors())
        raise SnError(f"dataset {spec.name}: {errs} (format {spec.format!r} takes: {known})") from None


def read_rows(spec: DatasetSpec, split: str | None = None) -> Rows:
    """The source's rows (of `split`, for formats with splits)."""
    return _format(spec).read(spec, format_params(spec, split))


def _source_file(spec: DatasetSpec) -> Path:
    path = spec.resolve(spec.source)
    if not path.is_file():
        raise SnError(f"dataset {spec.name}: source file {path} not found")
    return path


@reader("jsonl")
def read_jsonl(spec: DatasetSpec, params: Params) -> Rows:
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
def read_csv(spec: DatasetSpec, params: Params) -> Rows:
    return _read_delimited(spec, ",")


@reader("tsv")
def read_tsv(spec: DatasetSpec, params: Params) -> Rows:
    return _read_delimited(spec, "\t")


@reader("parquet")
def read_parquet(spec: DatasetSpec, params: Params) -> Rows:
    import pyarrow.parquet as pq

    return pq.read_table(_source_file(spec)).to_pylist()


@reader("folder")
def read_folder(spec: DatasetSpec, params: Params) -> Rows:
    """`source/<class>/<image>`: the sub-folder names the label; the question comes from `question_template`."""
    root = spec.resolve(spec.source)
    if not root.is_dir():
        raise SnError(f"dataset {spec.name}: source folder {root} not found")
    rows = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        for img in sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            rows.append({"id": f"{sub.name}/{img.name}", "image": str(img), "answer": sub.name})
    return rows


class SyntheticParams(Params):
    """`synthetic.generate`'s options (its defaults apply to those not given)."""

    n: int | None = None
    image_size: int | None = None
    background: list[int] | None = None
    scale: float | None = None


@reader("synthetic", SyntheticParams)
def read_synthetic(spec: DatasetSpec, params: SyntheticParams) -> Rows:
    from .synthetic import generate

    return generate(spec.source, seed=spec.seed, **params.model_dump(exclude_none=True))


@reader("hf", SplitParams)
def read_hf(spec: DatasetSpec, params: SplitParams) -> Rows:
    """Any Hugging Face dataset, by hub id or local copy (hub layout or `save_to_disk`), with the spec's fields."""
    from .hub import hub_rows

    return hub_rows(spec, params)
