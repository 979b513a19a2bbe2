"""VLMEvalKit's benchmark TSVs (`$LMUData/<NAME>.tsv`) as a format, and `sn datasets import` writing a spec for one.

Columns: `index`, `image` (base64; a value of 64 characters or fewer is the `index` of the row whose image it
reuses) or `image_path`, `question`, optional `hint`, option columns `A`, `B`, ... (multiple choice, a letter
`answer`) or none (yes/no, `answer` Yes/No). Questions are worded as VLMEvalKit's default MCQ prompt."""

from __future__ import annotations

import ast
import csv
import re
import sys
import tempfile
from pathlib import Path
from typing import Literal

import yaml

from ..errors import SnError
from .benchmarks import LETTERS
from .formats import ALLOWED, Params, Rows, reader
from .spec import DatasetSpec

POINTER_MAX = 64  # VLMEvalKit: an `image` this short is another row's index, not an image
MCQ_SUFFIX = "Please select the correct answer from the options above."
YESNO_SUFFIX = "Please answer yes or no."


class TsvParams(Params):
    kind: Literal["auto", "mcq", "yesno"] = "auto"


def read_table(spec_name: str, path: Path) -> tuple[list[str], list[dict]]:
    if not path.is_file():
        raise SnError(f"dataset {spec_name}: TSV file {path} not found")
    csv.field_size_limit(sys.maxsize)  # whole base64 images in one field
    with open(path, encoding="utf-8", newline="") as fh:
        table = csv.DictReader(fh, delimiter="\t")
        return list(table.fieldnames or []), list(table)


def option_columns(columns: list[str]) -> list[str]:
    """The option letters present as columns, A, B, ... in order."""
    out = []
    for letter in LETTERS:
        if letter not in columns:
            break
        out.append(letter)
    return out


def detect_kind(columns: list[str]) -> str:
    """Multiple choice when there are option columns A and B (VLMEvalKit's own rule), otherwise yes/no."""
    return "mcq" if len(option_columns(columns)) >= 2 else "yesno"


def _need(columns: list[str], names: list[str], path: Path, spec_name: str) -> None:
    missing = [c for c in names if c not in columns]
    if missing:
        raise SnError(f"dataset {spec_name}: {path} has no column {missing[0]!r} (has {columns})")


def _images(rows: list[dict], spec_name: str, path: Path) -> list[str]:
    """Each row's image value, pointer rows replaced by the image of the row they name."""
    by_index = {row["index"]: row["image"] for row in rows if len(row.get("image") or "") > POINTER_MAX}
    out = []
    for n, row in enumerate(rows, 2):  # line numbers: the header is line 1
        value = (row.get("image") or "").strip()
        if len(value) <= POINTER_MAX:
            if value not in by_index:
                raise SnError(f"dataset {spec_name}: {path.name} line {n} (index {row['index']}): image {value!r} "
                              "names no row with an image")
            value = by_index[value]
        out.append(value)
    return out


def _beside(tsv: Path, value: str) -> str | list[str]:
    """`image_path` relative to the TSV's folder; a list written as text holds several."""
    items = ast.literal_eval(value) if value.strip().startswith("[") else value  # literals only: runs no code
    if isinstance(items, list):
        return [str(tsv.parent / str(v)) for v in items]
    return str(tsv.parent / value)


@reader("vlmevalkit", TsvParams)
def read_vlmevalkit(spec: DatasetSpec, params: TsvParams) -> Rows:
    path = spec.resolve(spec.source)
    columns, rows = read_table(spec.name, path)
    _need(columns, ["index", "question", "answer"], path, spec.name)
    if "image" not in columns and "image_path" not in columns:
        raise SnError(f"dataset {spec.name}: {path} has neither an `image` nor an `image_path` column")
    kind = detect_kind(columns) if params.kind == "auto" else params.kind
    letters = option_columns(columns)
    images = _images(rows, spec.name, path) if "image" in columns else [_beside(path, r["image_path"]) for r in rows]
    out = []
    for row, image in zip(rows, images):
        item = {"id": row["index"], "image": image, "answer": row["answer"].strip()}
        if kind == "mcq":
            options = [L for L in letters if (row.get(L) or "").strip() and row[L].strip().lower() != "nan"]
            hint = (row.get("hint") or "").strip()
            text = (f"Hint: {hint}\n" if hint and hint.lower() != "nan" else "") + f"Question: {row['question']}\n"
            text += "Options:\n" + "\n".join(f"{L}. {row[L]}" for L in options)
            out.append({**item, "question": text, "answer": item["answer"].upper(), ALLOWED: options})
        else:
            out.append({**item, "question": row["question"], "answer": item["answer"].lower()})
    return out


def import_spec(tsv: str | Path, name: str | None = None) -> dict:
    """A spec (as a dict) for a VLMEvalKit TSV: its kind and classes read from the columns."""
    path = Path(tsv).expanduser().resolve()
    name = name or re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).strip("-").lower()
    columns, _ = read_table(name, path)
    _need(columns, ["index", "question", "answer"], path, name)
    kind = detect_kind(columns)
    spec = {"name": name, "format": "vlmevalkit", "source": str(path)}
    if kind == "mcq":
        return {**spec, "classes": option_columns(columns), "task_suffix": MCQ_SUFFIX}
    return {**spec, "classes": ["no", "yes"], "verbalizers": {"no": "No", "yes": "Yes"}, "task_suffix": YESNO_SUFFIX}


def import_tsv(tsv: str | Path, name: str | None = None, db: str | None = None) -> Path:
    """Write the spec of `tsv` into the workspace's datasets (never over an existing one) and register it like
    `sn datasets add`; returns the spec's path. A TSV that does not load leaves nothing behind."""
    from ..registry import add_dataset, check_name
    from ..workspace import subdir

    spec = import_spec(tsv, name)
    target = subdir("datasets") / f"{spec['name']}.yaml"
    if target.exists():
        raise SnError(f"dataset {spec['name']} is already registered ({target}); pick another --name")
    check_name(spec["name"])
    # The spec goes through a temporary file: `add_dataset` writes the registered copy last, so an import cut short
    # leaves nothing registered and running it again completes it.
    with tempfile.TemporaryDirectory() as tmp:
        draft = Path(tmp) / f"{spec['name']}.yaml"
        draft.write_text(yaml.safe_dump(spec, sort_keys=False))
        add_dataset(draft, db)
    return target
