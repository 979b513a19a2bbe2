"""From a spec to validated samples: field mapping, image references, the stratified probe/eval split, a content
hash. Everything is checked before any model runs, and errors name the dataset, the sample and the field."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import SnError
from ..workspace import home
from .formats import IMAGE_SUFFIXES, read_rows
from .spec import DatasetSpec, load_spec_file

SPLITS = ("probe", "eval")


@dataclass(frozen=True)
class Sample:
    id: str
    image: Any  # a Path, raw bytes, or an in-memory PIL image (synthetic)
    question: str  # the full user text: question and task suffix
    label: int

    def load_image(self) -> Image.Image:
        try:
            if isinstance(self.image, Image.Image):
                return self.image.convert("RGB")
            src = io.BytesIO(self.image) if isinstance(self.image, bytes) else self.image
            with Image.open(src) as img:
                return img.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise SnError(f"sample {self.id}: cannot read image ({exc})") from None

    def image_digest(self) -> bytes:
        """Content of the image for hashing; also proves the image is readable."""
        if isinstance(self.image, Image.Image):
            return hashlib.sha256(np.asarray(self.image.convert("RGB")).tobytes()).digest()
        try:
            data = self.image if isinstance(self.image, bytes) else Path(self.image).read_bytes()
        except OSError as exc:
            raise SnError(f"sample {self.id}: cannot read image {self.image} ({exc.strerror})") from None
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.verify()
        except Exception as exc:  # PIL raises many types for corrupt files
            where = "" if isinstance(self.image, bytes) else f" {self.image}"
            raise SnError(f"sample {self.id}: unreadable image{where} ({exc})") from None
        return hashlib.sha256(data).digest()


@dataclass(frozen=True)
class Dataset:
    spec: DatasetSpec
    samples: list[Sample]  # probe and eval samples only, in source order
    split: list[str]
    content_hash: str

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int16)

    def __len__(self) -> int:
        return len(self.samples)


# --- resolving names ---------------------------------------------------------------------------------------------
def builtin_specs() -> dict[str, Path]:
    folder = resources.files("sn_store.datasets") / "specs"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".yaml")}


def resolve_spec(name: str) -> DatasetSpec:
    """A spec by built-in name, workspace-registered name, or file path."""
    builtin = builtin_specs()
    if name in builtin:
        return load_spec_file(builtin[name])
    registered = home() / "datasets" / f"{name}.yaml"
    if registered.is_file():
        return load_spec_file(registered)
    if Path(name).is_file():
        return load_spec_file(name)
    raise SnError(f"dataset {name!r}: not a spec file nor a known name (built-in: {sorted(builtin)})")


# --- rows to samples ---------------------------------------------------------------------------------------------
def _field(row: dict, field: str, sample_id: str) -> Any:
    if field not in row or row[field] is None or row[field] == "":
        raise SnError(f"sample {sample_id}: missing field {field!r}")
    return row[field]


def _image_ref(spec: DatasetSpec, value: Any, sample_id: str) -> Any:
    if isinstance(value, Image.Image | bytes):
        return value
    if isinstance(value, dict) and value.get("bytes"):  # HF datasets / parquet image struct
        return value["bytes"]
    if isinstance(value, dict) and value.get("path"):
        value = value["path"]
    if not isinstance(value, str):
        raise SnError(f"sample {sample_id}: field {spec.image_field!r} is neither a path nor image bytes")
    path = spec.resolve(value)
    if path.suffix.lower() in IMAGE_SUFFIXES or path.exists():
        if not path.is_file():
            raise SnError(f"sample {sample_id}: image file {path} not found")
        return path
    try:  # VLMEvalKit TSVs carry the image as base64
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SnError(f"sample {sample_id}: image {value[:60]!r} is neither an existing file nor base64") from None


def _question(spec: DatasetSpec, row: dict, sample_id: str) -> str:
    if spec.question_template is not None:
        try:
            text = spec.question_template.format(**row)
        except KeyError as exc:
            raise SnError(f"sample {sample_id}: question_template needs field {exc.args[0]!r}") from None
    else:
        text = str(_field(row, spec.question_field, sample_id))
    return f"{text}\n{spec.task_suffix}" if spec.task_suffix else text


def to_sample(spec: DatasetSpec, row: dict, index: int) -> Sample:
    sample_id = str(row.get(spec.id_field, index))
    label = str(_field(row, spec.label_field, sample_id)).strip()
    if label not in spec.classes:
        raise SnError(f"sample {sample_id}: label {label!r} is not one of the classes {spec.classes}")
    image = _image_ref(spec, _field(row, spec.image_field, sample_id), sample_id)
    return Sample(sample_id, image, _question(spec, row, sample_id), spec.classes.index(label))


# --- the split ---------------------------------------------------------------------------------------------------
def _quota(total: int, counts: np.ndarray) -> np.ndarray:
    """Split `total` over classes in proportion to `counts` (largest remainder), never over a class's count."""
    exact = total * counts / counts.sum()
    quota = np.floor(exact).astype(int)
    for k in np.argsort(-(exact - quota), kind="stable")[: total - quota.sum()]:
        quota[k] += 1
    return np.minimum(quota, counts)


def stratified_split(labels: np.ndarray, probe_size: int, eval_size: int, seed: int) -> np.ndarray:
    """Per sample: 'probe', 'eval' or '' (unused); stratified by label, deterministic from seed."""
    rng = np.random.default_rng(seed)
    split = np.full(len(labels), "", dtype=object)
    classes = np.unique(labels)
    members = [rng.permutation(np.flatnonzero(labels == k)) for k in classes]
    counts = np.array([len(m) for m in members])
    probe_q = _quota(probe_size, counts)
    eval_q = _quota(eval_size, counts - probe_q)
    for m, p, e in zip(members, probe_q, eval_q):
        split[m[:p]] = "probe"
        split[m[p : p + e]] = "eval"
    return split


def load_dataset(name: str | DatasetSpec) -> Dataset:
    """Read, validate and split a dataset. Raises SnError naming the first bad sample or field."""
    spec = name if isinstance(name, DatasetSpec) else resolve_spec(name)
    rows = read_rows(spec)
    if not rows:
        raise SnError(f"dataset {spec.name}: no samples in {spec.source}")
    samples = [to_sample(spec, row, i) for i, row in enumerate(rows)]
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise SnError(f"dataset {spec.name}: sample id {dup!r} appears more than once")
    labels = np.array([s.label for s in samples])
    present = np.unique(labels)
    if len(present) < 2:
        raise SnError(f"dataset {spec.name}: every sample has the label {spec.classes[present[0]]!r}; "
                      "a classifier needs at least two classes present")
    n = len(samples)
    probe_size = spec.probe_size or n // 2
    eval_size = n - probe_size if spec.eval_size is None else spec.eval_size
    if probe_size + eval_size > n:
        raise SnError(f"dataset {spec.name}: probe_size {probe_size} + eval_size {eval_size} > {n} samples")
    split = stratified_split(labels, probe_size, eval_size, spec.seed)
    keep = np.flatnonzero(split != "")
    digest = hashlib.sha256(spec.model_dump_json(exclude={"base_dir"}).encode())
    for i in keep:
        s = samples[i]
        digest.update(f"{s.id}\0{s.question}\0{s.label}\0{split[i]}\0".encode())
        digest.update(s.image_digest())
    return Dataset(spec, [samples[i] for i in keep], [str(split[i]) for i in keep], digest.hexdigest()[:16])
