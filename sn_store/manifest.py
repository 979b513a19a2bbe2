"""The early-exit artifact's manifest as one pydantic model, and the check of an artifact folder against it.

`manifest.json` lists every other file of the artifact with its digest, and carries `digest`: the digest of its own
canonical JSON (every field but `digest`, keys sorted, no spaces). Loading validates the model (a wrong field is a
one-line error naming it), recomputes that digest (an edited neuron, threshold or class list is refused), and
refuses symbolic links, anything that is not a plain file, code files, and files missing, changed or not listed.
Export writes the manifest last, with `finished: true` only after its own check passed, so the folder of an export
that was killed never loads. Every digest names its algorithm: `sha256:<hex>`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PlainSerializer,
    StringConstraints,
    ValidationError,
    model_validator,
)

from .errors import SnError
from .evaluate import Neuron
from .models.base import SITES

FORMAT = 2
MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
STAGING = ".staging-"  # export builds in `.NAME.staging-XXXX` beside its destination
CODE_SUFFIXES = (".py", ".pyc", ".so")  # an artifact never carries code: nothing in it could be run
MAX_MANIFEST_BYTES = 16 << 20

Digest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
# A path inside the artifact: no absolute paths, no `..`, no hidden names.
FileName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$")]
Scalar = str | int | float | None


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return f"sha256:{h.hexdigest()}"


def _not_nan(x: float) -> float:
    if math.isnan(x):
        raise ValueError("NaN is not a threshold")
    return x


def _json_float(x: float) -> float | str:
    """JSON has no infinity: the constant classifiers' thresholds are written as the strings "inf" / "-inf"."""
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


Threshold = Annotated[float, AfterValidator(_not_nan), PlainSerializer(_json_float, when_used="json")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSource(_Strict):
    id: str = Field(min_length=1)
    model_type: str = Field(min_length=1)
    revision: str | None = None
    config_hash: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"]


class ManifestNeuron(_Strict):
    """One exit neuron: it votes for class `cls` when polarity * (a - threshold) > 0 (margins in units of `scale`)."""

    site: Literal[SITES]
    layer: NonNegativeInt
    index: NonNegativeInt
    cls: NonNegativeInt
    polarity: Literal[-1, 1]
    threshold: Threshold
    scale: float = Field(ge=0, allow_inf_nan=False)

    @classmethod
    def of(cls, n: Neuron) -> ManifestNeuron:
        return cls(site=n.site, layer=n.layer, index=n.index, cls=n.cls, polarity=n.polarity,
                   threshold=n.threshold, scale=n.scale)

    def neuron(self) -> Neuron:
        return Neuron(self.site, self.layer, self.index, self.cls, self.polarity, self.threshold, self.scale)


class Metrics(_Strict):
    run: list[dict[str, Scalar]] = []  # the run's evaluations as the leaderboard holds them
    early_exit_eval: dict[str, Scalar] | None = None  # export's own check on the eval split


class Manifest(_Strict):
    format: Literal[FORMAT]
    sn_store_version: str
    model: ModelSource
    exit_layer: NonNegativeInt
    neurons: list[ManifestNeuron] = Field(min_length=1)
    run_id: str
    classes: list[Annotated[str, StringConstraints(min_length=1)]] = Field(min_length=2)
    verbalizers: list[str] | None = None
    prompt: str
    dataset: str
    task_suffix: str = ""
    activation_dtype: Literal["float16", "float32"]
    metrics: Metrics = Metrics()
    files: dict[FileName, Digest] = {}
    finished: bool = False  # set by export as its last write, after its own check
    digest: Digest | None = None  # of the canonical JSON of every other field

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes: repeated class name in {self.classes}")
        if self.verbalizers is not None and len(self.verbalizers) != len(self.classes):
            raise ValueError(f"verbalizers: {len(self.verbalizers)} for {len(self.classes)} classes")
        for i, n in enumerate(self.neurons):
            if n.layer > self.exit_layer:
                raise ValueError(f"neurons.{i}.layer: {n.layer} is past exit_layer {self.exit_layer}")
            if n.cls >= len(self.classes):
                raise ValueError(f"neurons.{i}.cls: {n.cls} is not an index into {len(self.classes)} classes")
        if self.exit_layer != max(n.layer for n in self.neurons):
            raise ValueError(f"exit_layer: {self.exit_layer} is not the last neuron's layer")
        return self

    def body_digest(self) -> str:
        body = self.model_dump(mode="json", exclude={"digest"})
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return f"sha256:{hashlib.sha256(text.encode()).hexdigest()}"

    def neuron_list(self) -> list[Neuron]:
        return [n.neuron() for n in self.neurons]


def _field_error(e: dict) -> str:
    msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
    field = ".".join(str(x) for x in e["loc"])
    return f"{field}: {msg}" if field else msg  # checks across fields name their fields themselves


def _field_errors(exc: ValidationError, limit: int = 3) -> str:
    parts = [_field_error(e) for e in exc.errors()[:limit]]
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def read_manifest(path: Path) -> Manifest:
    """The validated manifest of the artifact folder `path`, its body checked against its own digest."""
    where = f"artifact {path}: {MANIFEST}"
    file = path / MANIFEST
    try:
        if not stat.S_ISREG(os.lstat(file).st_mode):
            raise SnError(f"{where} is not a plain file")
        if os.lstat(file).st_size > MAX_MANIFEST_BYTES:
            raise SnError(f"{where} is larger than {MAX_MANIFEST_BYTES >> 20} MiB")
        data = json.loads(file.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except FileNotFoundError:
        raise SnError(f"artifact {path}: no {MANIFEST} (not an sn_store artifact)") from None
    except RecursionError:
        raise SnError(f"{where}: nested too deeply") from None
    except (OSError, ValueError) as exc:
        raise SnError(f"{where}: unreadable ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else "?"
        raise SnError(f"{where}: format {found} is not {FORMAT} (made by another sn_store version, or not an "
                      "sn_store artifact)")
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        raise SnError(f"{where}: {_field_errors(exc)}") from None
    if manifest.digest != manifest.body_digest():
        raise SnError(f"{where}: field digest does not match the manifest's body (edited after export)")
    return manifest


def artifact_files(path: Path) -> list[str]:
    """The plain files under `path` (relative names, manifest included); refuses links and special files."""
    found = []
    for root, dirs, files in os.walk(path):
        for name in sorted(dirs + files):
            full = Path(root) / name
            rel = str(full.relative_to(path))
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                raise SnError(f"artifact {path}: {rel} is a symbolic link (an artifact holds plain files only)")
            if stat.S_ISREG(mode):
                found.append(rel)
            elif not stat.S_ISDIR(mode):
                raise SnError(f"artifact {path}: {rel} is not a plain file")
    return found


def check_files(path: Path, manifest: Manifest) -> None:
    """Every listed file present, unchanged and plain; nothing unlisted; no code."""
    present = set(artifact_files(path)) - {MANIFEST}
    for name in sorted(present | set(manifest.files)):
        if name.endswith(CODE_SUFFIXES):
            raise SnError(f"artifact {path}: file {name} is code (an artifact never carries code)")
    for name in (CONFIG, WEIGHTS):
        if name not in manifest.files:
            raise SnError(f"artifact {path}: {MANIFEST}: field files does not list {name}")
    for name in sorted(set(manifest.files) - present):
        raise SnError(f"artifact {path}: file {name} is missing")
    for name in sorted(present - set(manifest.files)):
        raise SnError(f"artifact {path}: file {name} is not in the manifest")
    for name, digest in sorted(manifest.files.items()):
        if sha256(path / name) != digest:
            raise SnError(f"artifact {path}: file {name} does not match its sha256 digest in the manifest (tampered "
                          "or truncated)")


def verify(path: Path, finished_only: bool = True) -> Manifest:
    """The manifest of the artifact at `path` after every check above. `finished_only=False` is for export's own
    check of its staging folder, before it marks the manifest finished."""
    if finished_only and path.name.startswith(".") and STAGING in path.name:
        raise SnError(f"artifact {path}: the staging folder of an export that did not finish")
    manifest = read_manifest(path)
    check_files(path, manifest)
    if finished_only and not manifest.finished:
        raise SnError(f"artifact {path}: its export did not finish (manifest field finished is false)")
    return manifest


def write_manifest(path: Path, manifest: Manifest) -> Manifest:
    """List every file now in `path`, seal the body with its digest, and write `manifest.json`; returns it."""
    files = {name: sha256(path / name) for name in artifact_files(path) if name != MANIFEST}
    body = Manifest.model_validate({**manifest.model_dump(mode="json"), "files": files, "digest": None})
    sealed = body.model_copy(update={"digest": body.body_digest()})
    (path / MANIFEST).write_text(sealed.model_dump_json(indent=2), encoding="utf-8")
    return sealed


def looks_like_artifact(path: Path) -> bool:
    """Whether the folder `path` holds an sn_store artifact of any format and nothing else: a manifest with a format
    number and a `files` mapping, and only the files it lists (so replacing it loses nothing of the user's)."""
    try:
        data = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        listed = data["files"] if isinstance(data, dict) and isinstance(data.get("format"), int) else None
        return isinstance(listed, dict) and set(artifact_files(path)) - {MANIFEST} <= set(listed)
    except (OSError, ValueError, KeyError, RecursionError, SnError):
        return False
