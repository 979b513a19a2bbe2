"""The dataset spec: a YAML file in the spirit of lmms-eval tasks, validated with pydantic (unknown keys are errors)."""

from __future__ import annotations

import os
from pathlib import Path
from string import Formatter
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import SnError

# Images past this many pixels are refused (a decompression bomb is otherwise only a PIL warning up to ~179 MP).
DEFAULT_MAX_PIXELS = 50_000_000
MAX_PIXELS_ENV = "SN_MAX_PIXELS"


class PromptVariant(BaseModel):
    """A rewording of the spec's prompt (for `sn_store.analyses.prompt_robustness`): the keys given replace the
    spec's own; a question_template may use the row's fields, e.g. `{question}` for the original question."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    question_template: str | None = None
    task_suffix: str | None = None

    @model_validator(mode="after")
    def _check(self) -> PromptVariant:
        if self.question_template is not None:
            template_fields(self.question_template)
        if self.question_template is None and self.task_suffix is None:
            raise ValueError(f"prompt variant {self.name!r}: give question_template and/or task_suffix")
        return self


class DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    format: str
    source: str
    image_field: str = "image"
    question_field: str | None = "question"
    question_template: str | None = None
    label_field: str = "answer"
    id_field: str = "id"
    classes: list[str] = Field(min_length=2)
    verbalizers: dict[str, str] | None = None
    positive_class: str | None = None
    task_suffix: str = ""
    probe_size: int | None = Field(default=None, ge=1)
    eval_size: int | None = Field(default=None, ge=0)
    seed: int = 0
    # Probe and eval from two splits of the source (formats with a `split` param); else both are cut from one.
    probe_split: str | None = None
    eval_split: str | None = None
    probe_per_class: int | None = Field(default=None, ge=1)  # N probe samples per class (SAVs use 20)
    max_pixels: int | None = Field(default=None, ge=1)  # default: $SN_MAX_PIXELS or DEFAULT_MAX_PIXELS
    params: dict[str, Any] = Field(default_factory=dict)  # format-specific options, declared by each format
    prompt_variants: list[PromptVariant] = Field(default_factory=list)  # reworded prompts; not part of the data
    base_dir: str = Field(default=".", exclude=True)  # internal: the spec file's folder, where relative paths start

    @model_validator(mode="after")
    def _check(self) -> DatasetSpec:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be distinct, got {self.classes}")
        if self.verbalizers is not None and set(self.verbalizers) != set(self.classes):
            raise ValueError(f"verbalizers must name exactly the classes {self.classes}")
        if self.positive_class is not None and self.positive_class not in self.classes:
            raise ValueError(f"positive_class {self.positive_class!r} is not one of {self.classes}")
        if self.question_field is None and self.question_template is None:
            raise ValueError("give question_field or question_template")
        if self.question_template is not None:
            template_fields(self.question_template)
        if (self.probe_split is None) != (self.eval_split is None):
            raise ValueError("give both probe_split and eval_split, or neither")
        if self.probe_per_class is not None and self.probe_size is not None:
            raise ValueError("give probe_size or probe_per_class, not both")
        names = [v.name for v in self.prompt_variants]
        if len(set(names)) != len(names) or "original" in names:
            raise ValueError(f"prompt_variants: names must be distinct and not 'original', got {names}")
        return self

    @property
    def pixel_limit(self) -> int:
        if self.max_pixels is not None:
            return self.max_pixels
        env = os.environ.get(MAX_PIXELS_ENV)
        try:
            return int(env) if env else DEFAULT_MAX_PIXELS
        except ValueError:
            raise SnError(f"${MAX_PIXELS_ENV}={env!r} is not a whole number of pixels") from None

    @property
    def class_verbalizers(self) -> list[str]:
        """The verbalizer of each class, in class order (default: the class string)."""
        return [(self.verbalizers or {}).get(c, c) for c in self.classes]

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def public_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def with_sizes(self, probe_size: int | None = None, eval_size: int | None = None) -> DatasetSpec:
        """This spec with the split sizes overridden (None: kept), validated again (`model_copy` is not). An explicit
        probe_size replaces the spec's probe_per_class: the override is what the user asked for now."""
        update = {k: v for k, v in (("probe_size", probe_size), ("eval_size", eval_size)) if v is not None}
        if probe_size is not None:
            update["probe_per_class"] = None
        if not update:
            return self
        data = {**self.model_dump(), **update, "base_dir": self.base_dir}
        try:
            return DatasetSpec(**data)
        except ValidationError as exc:
            raise SnError(f"dataset {self.name}: {_format_errors(exc)}") from None

    def with_variant(self, variant: PromptVariant) -> DatasetSpec:
        """This spec with the prompt reworded as `variant` says."""
        return self.model_copy(update=variant.model_dump(exclude={"name"}, exclude_none=True))


def template_fields(template: str) -> list[tuple[str, str | None]]:
    """(literal text, field name or None) pieces of a question template; only plain `{name}` fields are allowed,
    so a template can neither reach attributes or items of a value (`{x.__class__}`, `{x[0]}`) nor format it."""
    try:
        parts = list(Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"question_template: {exc}") from None
    for _, name, spec, conv in parts:
        if name is not None and (not name.isidentifier() or spec or conv):
            raise ValueError(f"question_template: only plain {{field}} names are substituted, not "
                             f"{{{name}{'!' + conv if conv else ''}{':' + spec if spec else ''}}}")
    return [(lit, name) for lit, name, _, _ in parts]


def _format_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(x) for x in err["loc"]) or "spec"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{field}: {msg}")
    return "; ".join(parts)


def parse_spec(data: dict[str, Any], where: str, base_dir: str | Path = ".", registered: bool = False) -> DatasetSpec:
    """A validated spec; relative paths start at `base_dir`. Only a workspace's registered copy may carry its
    original folder as `base_dir` (written by `sn datasets add`); in any other spec it is an unknown key."""
    if not isinstance(data, dict):
        raise SnError(f"dataset spec {where}: expected a mapping of keys, got {type(data).__name__}")
    data = dict(data)
    if "base_dir" in data:
        if not registered:
            raise SnError(f"dataset spec {where}: base_dir: unknown key (it is internal; paths are relative to the "
                          "spec file)")
        base_dir = data.pop("base_dir")
    try:
        return DatasetSpec(**data, base_dir=str(base_dir))
    except ValidationError as exc:
        raise SnError(f"dataset spec {where}: {_format_errors(exc)}") from None


def load_spec_file(path: str | Path) -> DatasetSpec:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SnError(f"dataset spec {path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise SnError(f"dataset spec {path}: invalid YAML ({exc})") from None
    return parse_spec(data, str(path), path.parent, registered=_is_registered_copy(path))


def _is_registered_copy(path: Path) -> bool:
    from ..workspace import home

    return path.resolve().parent == (home() / "datasets").resolve()
