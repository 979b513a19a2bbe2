"""The dataset spec: a YAML file in the spirit of lmms-eval tasks, validated with pydantic (unknown keys are errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import SnError


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
    params: dict[str, Any] = Field(default_factory=dict)  # format-specific options (synthetic: n, image_size)
    base_dir: str = Field(default=".", exclude=True)  # the spec file's folder: relative paths start here

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
        return self

    @property
    def class_verbalizers(self) -> list[str]:
        """The verbalizer of each class, in class order (default: the class string)."""
        return [(self.verbalizers or {}).get(c, c) for c in self.classes]

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def public_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _format_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(x) for x in err["loc"]) or "spec"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{field}: {msg}")
    return "; ".join(parts)


def parse_spec(data: dict[str, Any], where: str, base_dir: str | Path = ".") -> DatasetSpec:
    if not isinstance(data, dict):
        raise SnError(f"dataset spec {where}: expected a mapping of keys, got {type(data).__name__}")
    data = dict(data)
    base_dir = data.pop("base_dir", base_dir)  # a registered copy carries its original folder
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
    return parse_spec(data, str(path), path.parent)
