"""From a spec to validated samples: field mapping, image references, the stratified probe/eval split, a content
hash. Everything is checked before any model runs, and errors name the dataset, the sample and the field."""

from __future__ import annotations

import ast
import base64
import binascii
import hashlib
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import SnError
from ..workspace import home
from .formats import ALLOWED, IMAGE_SUFFIXES, SKIP, MissingSplit, has_splits, read_rows
from .images import Marked, image_digest, open_image
from .spec import DEFAULT_MAX_PIXELS, DatasetSpec, load_spec_file, template_fields

log = logging.getLogger(__name__)

SPLITS = ("probe", "eval")


@dataclass(frozen=True)
class Sample:
    id: str
    image: Any  # a Path, raw bytes, an in-memory PIL image, a `Marked` file, or a list of these (multi-image)
    question: str  # the full user text: question and task suffix
    label: int
    max_pixels: int = DEFAULT_MAX_PIXELS

    def load_images(self) -> list[Image.Image]:
        refs = self.image if isinstance(self.image, list) else [self.image]
        return [open_image(ref, self.max_pixels, self.id) for ref in refs]

    def load_image(self) -> Image.Image:
        """The sample's one image (a multi-image sample: use `load_images`)."""
        if isinstance(self.image, list):
            if len(self.image) != 1:
                raise SnError(f"sample {self.id}: has {len(self.image)} images; this model input takes one")
            return self.load_images()[0]
        return open_image(self.image, self.max_pixels, self.id)

    def image_digest(self) -> bytes:
        """Content of the image(s) for hashing; also proves they are readable and within the pixel limit."""
        refs = self.image if isinstance(self.image, list) else [self.image]
        return b"".join(image_digest(ref, self.max_pixels, self.id) for ref in refs)


@dataclass(frozen=True)
class Dataset:
    spec: DatasetSpec
    samples: list[Sample]  # probe and eval samples only, in source order
    split: list[str]
    content_hash: str
    class_mask: np.ndarray | None = None  # (sample, class) bool: the options each question has; None: all
    skipped: int = 0  # source rows left out (e.g. a ScienceQA question without an image)

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int16)

    def __len__(self) -> int:
        return len(self.samples)


# --- resolving names ---------------------------------------------------------------------------------------------
def builtin_specs() -> dict[str, Path]:
    folder = resources.files("sn_store.datasets") / "specs"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".yaml")}


def suite_specs() -> dict[str, Path]:
    """The built-in specs that need no data (the synthetic suite of `sn demo`); the benchmarks need a source."""
    return {name: path for name, path in builtin_specs().items() if load_spec_file(path).format == "synthetic"}


def resolve_spec(name: str, source: str | None = None) -> DatasetSpec:
    """A spec by workspace-registered name (`sn datasets add pope --source ...` shadows the built-in `pope`),
    built-in name, or file path; `source` points it at another copy of the data (a local path, taken relative to
    the current folder, or a hub id)."""
    builtin = builtin_specs()
    registered = home() / "datasets" / f"{name}.yaml"
    if registered.is_file():
        spec = load_spec_file(registered)
    elif name in builtin:
        spec = load_spec_file(builtin[name])
    elif Path(name).is_file():
        spec = load_spec_file(name)
    else:
        registered_names = sorted(p.stem for p in (home() / "datasets").glob("*.yaml"))
        raise SnError(f"dataset {name!r}: not a spec file nor a known name (built-in: {sorted(builtin)}; registered: "
                      f"{registered_names or 'none'})")
    return with_source(spec, source) if source else spec


def with_source(spec: DatasetSpec, source: str) -> DatasetSpec:
    local = Path(source).expanduser()
    return spec.model_copy(update={"source": str(local.resolve()) if local.exists() else source})


# --- rows to samples ---------------------------------------------------------------------------------------------
def _field(row: dict, field: str, sample_id: str) -> Any:
    value = row.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise SnError(f"sample {sample_id}: missing field {field!r}")
    return row[field]


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a base64 image read as a path: "File name too long"
        return False


def _image_ref(spec: DatasetSpec, value: Any, sample_id: str) -> Any:
    if isinstance(value, Image.Image | bytes | Marked):
        return value
    if isinstance(value, dict) and value.get("bytes"):  # HF datasets / parquet image struct
        return value["bytes"]
    if isinstance(value, dict) and value.get("path"):
        value = value["path"]
    if isinstance(value, list | tuple):  # several images (a list column)
        if not value:
            raise SnError(f"sample {sample_id}: field {spec.image_field!r} holds no image")
        return [_image_ref(spec, v, sample_id) for v in value]
    if not isinstance(value, str):
        raise SnError(f"sample {sample_id}: field {spec.image_field!r} is neither a path nor image bytes")
    if value.startswith("[") and value.endswith("]"):  # a list written as text (VLMEvalKit multi-image rows)
        return _image_ref(spec, _literal_list(value, sample_id), sample_id)
    path = spec.resolve(value)
    if _is_file(path):
        return path
    if len(value) < 256 and path.suffix.lower() in IMAGE_SUFFIXES:
        raise SnError(f"sample {sample_id}: image file {path} not found")
    try:  # VLMEvalKit TSVs carry the image as base64
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SnError(f"sample {sample_id}: image {value[:60]!r} is neither an existing file nor base64") from None


def _literal_list(value: str, sample_id: str) -> list:
    try:
        items = ast.literal_eval(value)  # literals only: never runs code
    except (ValueError, SyntaxError):
        raise SnError(f"sample {sample_id}: image list {value[:60]!r} is not a list of strings") from None
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise SnError(f"sample {sample_id}: image list {value[:60]!r} is not a list of strings")
    return items


def _question(spec: DatasetSpec, row: dict, sample_id: str) -> str:
    if spec.question_template is not None:
        parts = []
        for literal, name in template_fields(spec.question_template):
            parts.append(literal)
            if name is not None:
                if name not in row:
                    raise SnError(f"sample {sample_id}: question_template needs field {name!r}")
                parts.append(str(row[name]))
        text = "".join(parts)
    else:
        text = str(_field(row, spec.question_field, sample_id))
    if not text.strip():
        raise SnError(f"sample {sample_id}: the question is empty")
    return f"{text}\n{spec.task_suffix}" if spec.task_suffix else text


def to_sample(spec: DatasetSpec, row: dict, index: int | str) -> Sample:
    sample_id = str(row.get(spec.id_field, index))
    label = str(_field(row, spec.label_field, sample_id)).strip()
    if label not in spec.classes:
        raise SnError(f"sample {sample_id}: label {label!r} is not one of the classes {spec.classes}")
    image = _image_ref(spec, _field(row, spec.image_field, sample_id), sample_id)
    return Sample(sample_id, image, _question(spec, row, sample_id), spec.classes.index(label), spec.pixel_limit)


def _allowed(spec: DatasetSpec, row: dict, sample: Sample) -> list[bool]:
    """The classes this question can be answered with (its options); every class unless the reader says."""
    allowed = row.get(ALLOWED)
    if allowed is None:
        return [True] * len(spec.classes)
    unknown = [c for c in allowed if c not in spec.classes]
    if unknown:
        raise SnError(f"sample {sample.id}: options {unknown} are not among the classes {spec.classes}")
    if spec.classes[sample.label] not in allowed:
        raise SnError(f"sample {sample.id}: answer {spec.classes[sample.label]!r} is not one of its options {allowed}")
    return [c in allowed for c in spec.classes]


# --- the split ---------------------------------------------------------------------------------------------------
def _quota(total: int, counts: np.ndarray) -> np.ndarray:
    """Split `total` over classes in proportion to `counts` (largest remainder), never over a class's count."""
    if counts.sum() == 0:
        return counts.copy()
    exact = total * counts / counts.sum()
    quota = np.floor(exact).astype(int)
    for k in np.argsort(-(exact - quota), kind="stable")[: total - quota.sum()]:
        quota[k] += 1
    return np.minimum(quota, counts)


def stratified_split(labels: np.ndarray, probe_size: int, eval_size: int | None, seed: int,
                     per_class: int | None = None) -> np.ndarray:
    """Per sample: 'probe', 'eval' or '' (unused); stratified by label, deterministic from seed. `per_class` draws
    that many probe samples of each class instead of `probe_size` in proportion; `eval_size` None: all the rest."""
    rng = np.random.default_rng(seed)
    split = np.full(len(labels), "", dtype=object)
    classes = np.unique(labels)
    members = [rng.permutation(np.flatnonzero(labels == k)) for k in classes]
    counts = np.array([len(m) for m in members])
    probe_q = np.minimum(per_class, counts) if per_class is not None else _quota(probe_size, counts)
    rest = counts - probe_q
    eval_q = rest if eval_size is None else _quota(eval_size, rest)
    for m, p, e in zip(members, probe_q, eval_q):
        split[m[:p]] = "probe"
        split[m[p : p + e]] = "eval"
    return split


@dataclass
class _Pool:
    """The samples read from one split of the source, with their options and the count of skipped rows."""

    samples: list[Sample]
    allowed: list[list[bool]]
    skipped: int


def _read_pool(spec: DatasetSpec, split: str | None, prefix: str = "") -> _Pool:
    rows = read_rows(spec, split)
    kept = [(i, row) for i, row in enumerate(rows) if SKIP not in row]
    skipped = len(rows) - len(kept)
    if skipped:
        reasons = sorted({str(row[SKIP]) for row in rows if SKIP in row})
        log.warning("dataset %s: skipped %d of %d rows%s (%s)", spec.name, skipped, len(rows),
                    f" of split {split}" if split else "", "; ".join(reasons))
    if not kept:
        raise SnError(f"dataset {spec.name}: no samples in {spec.source}" + (f" (split {split})" if split else ""))
    samples = [to_sample(spec, row, f"{prefix}{i}") for i, row in kept]
    allowed = [_allowed(spec, row, s) for (_, row), s in zip(kept, samples)]
    return _Pool(samples, allowed, skipped)


def _check_classes(spec: DatasetSpec, labels: np.ndarray, where: str) -> None:
    present = np.unique(labels)
    if len(present) < 2:
        raise SnError(f"dataset {spec.name}: every sample{where} has the label {spec.classes[present[0]]!r}; "
                      "a classifier needs at least two classes present")


def _pools(spec: DatasetSpec) -> list[tuple[_Pool, np.ndarray]]:
    """(pool, per-sample split) pairs: two splits of the source, or one cut into probe and eval."""
    if spec.probe_split is not None:
        if not has_splits(spec):
            raise SnError(f"dataset {spec.name}: format {spec.format!r} has no splits; drop probe_split/eval_split")
        evals = _read_pool(spec, spec.eval_split, f"{spec.eval_split}-")
        try:
            probes = _read_pool(spec, spec.probe_split, f"{spec.probe_split}-")
        except MissingSplit as exc:
            log.warning("%s: probing on a cut of split %s instead", exc, spec.eval_split)
            return [(evals, _cut(spec, evals))]
        # Sizes are at most: a split smaller than probe_size or eval_size is taken whole.
        n_probe = min(spec.probe_size or len(probes.samples) // 2, len(probes.samples))
        n_eval = None if spec.eval_size is None else min(spec.eval_size, len(evals.samples))
        return [(probes, stratified_split(_labels(probes), n_probe, 0, spec.seed, spec.probe_per_class)),
                (evals, stratified_split(_labels(evals), 0, n_eval, spec.seed))]
    pool = _read_pool(spec, None)
    return [(pool, _cut(spec, pool))]


def _labels(pool: _Pool) -> np.ndarray:
    return np.array([s.label for s in pool.samples])


def _cut(spec: DatasetSpec, pool: _Pool) -> np.ndarray:
    labels = _labels(pool)
    n = len(labels)
    _check_classes(spec, labels, "")
    if spec.probe_per_class is not None:
        return stratified_split(labels, 0, spec.eval_size, spec.seed, spec.probe_per_class)
    probe_size = spec.probe_size or n // 2
    eval_size = n - probe_size if spec.eval_size is None else spec.eval_size
    if probe_size + eval_size > n:
        raise SnError(f"dataset {spec.name}: probe_size {probe_size} + eval_size {eval_size} > {n} samples")
    return stratified_split(labels, probe_size, eval_size, spec.seed)


def load_dataset(name: str | DatasetSpec, source: str | None = None) -> Dataset:
    """Read, validate and split a dataset. Raises SnError naming the first bad sample or field."""
    spec = name if isinstance(name, DatasetSpec) else resolve_spec(name)
    spec = with_source(spec, source) if source else spec
    samples, split, allowed, skipped = [], [], [], 0
    for pool, cut in _pools(spec):
        keep = np.flatnonzero(cut != "")
        samples += [pool.samples[i] for i in keep]
        split += [str(cut[i]) for i in keep]
        allowed += [pool.allowed[i] for i in keep]
        skipped += pool.skipped
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise SnError(f"dataset {spec.name}: sample id {dup!r} appears more than once")
    labels = np.array([s.label for s in samples])
    for part in ("probe", "eval"):
        if part in split:
            _check_classes(spec, labels[np.asarray(split) == part], f" of the {part} split")
    mask = np.array(allowed, dtype=bool)
    digest = hashlib.sha256(spec.model_dump_json(exclude={"base_dir", "prompt_variants"}).encode())
    for s, part in zip(samples, split):
        digest.update(f"{s.id}\0{s.question}\0{s.label}\0{part}\0".encode())
        digest.update(s.image_digest())
    if not mask.all():
        digest.update(mask.tobytes())
    return Dataset(spec, samples, split, digest.hexdigest()[:16], None if mask.all() else mask, skipped)
