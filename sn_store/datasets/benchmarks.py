"""The paper's benchmarks as formats: each turns its published rows into plain rows `{id, image, question, answer}`
(plus the options a question has, or the reason a row is skipped) in the wording of the harnesses (lmms-eval,
VLMEvalKit); the spec adds the task suffix. Schemas: `benchmarks.md` in the shared docs, summarised in the README."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import combinations
from pathlib import Path
from typing import Literal

from ..errors import SnError
from .formats import ALLOWED, SKIP, MissingSplit, Rows, SplitParams, reader
from .hub import hub_rows, split_name
from .images import Marked
from .spec import DatasetSpec

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def options_text(choices: list[str]) -> str:
    """`A. first\nB. second ...`: the options as lmms-eval and LLaVA write them."""
    return "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))


Release = Callable[[DatasetSpec, SplitParams], Rows | None]


def hub_format(name: str, release: Release | None = None):
    """Register a format reading hub rows (any of `hub_rows`' sources) through `convert(row, index, params)`;
    `release(spec, params)` gives the rows of the original release instead when the source is one (else None)."""

    def deco(convert: Callable[[dict, int, SplitParams], dict]):
        def read(spec: DatasetSpec, params: SplitParams) -> Rows:
            rows = release(spec, params) if release else None
            rows = hub_rows(spec, params) if rows is None else rows
            out = []
            for i, row in enumerate(rows):
                try:
                    out.append(convert(row, i, params))
                except KeyError as exc:
                    raise SnError(f"dataset {spec.name}: row {i} of {split_name(params)}: missing column "
                                  f"{exc.args[0]!r} (has {sorted(row)})") from None
            return out

        read.__doc__ = convert.__doc__
        reader(name, SplitParams)(read)
        return convert

    return deco


POPE_CATEGORIES = ("adversarial", "popular", "random")
POPE_IMAGES = ("val2014", "images/val2014", "images", ".")  # where COCO val2014 may sit beside the question files


def pope_release(spec: DatasetSpec, params: SplitParams) -> Rows | None:
    """RUCAIBox/POPE's files (`coco_pope_<category>.json`, JSON lines `{question_id, image, text, label}`, at the
    source or in `output/coco/`) as hub rows, the images from COCO val2014 beside them; `test` is all three
    categories, as in the hub's default config. None: the source is not such a folder."""
    root = spec.resolve(spec.source)
    if not root.is_dir():
        return None
    folder = next((f for f in (root, root / "output" / "coco") if any(f.glob("coco_pope_*.json"))), None)
    if folder is None:
        return None
    cats = POPE_CATEGORIES if params.split == "test" else (params.split,)
    files = [folder / f"coco_pope_{c}.json" for c in cats]
    if not all(f.is_file() for f in files):
        raise MissingSplit(f"dataset {spec.name}: no {', '.join(f.name for f in files if not f.is_file())} in "
                           f"{folder} for split {params.split!r}")
    rows = [row for c, f in zip(cats, files) for row in _pope_lines(spec, f, c)]
    images = next((root / d for d in POPE_IMAGES if rows and (root / d / rows[0]["image"]).is_file()), None)
    if images is None:
        raise SnError(f"dataset {spec.name}: COCO val2014 image {rows[0]['image'] if rows else '?'} not found in "
                      f"{', '.join(POPE_IMAGES)} under {root}; put (or link) the val2014 folder there")
    return [{**row, "image": str(images / row["image"])} for row in rows]


def _pope_lines(spec: DatasetSpec, path: Path, category: str) -> Rows:
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            q = json.loads(line)
            rows.append({"category": category, "question_id": q["question_id"], "question": q["text"],
                         "answer": q["label"], "image": str(q["image"])})
        except json.JSONDecodeError as exc:
            raise SnError(f"dataset {spec.name}: {path.name} line {n}: invalid JSON ({exc.msg})") from None
        except KeyError as exc:
            raise SnError(f"dataset {spec.name}: {path.name} line {n}: missing field {exc.args[0]!r}") from None
    return rows


@hub_format("pope", release=pope_release)
def pope(row: dict, i: int, params: SplitParams) -> dict:
    """POPE: `question_id` restarts in each category of the Full config, so the id joins the two."""
    return {"id": f"{row['category']}-{row['question_id']}", "image": row["image"],
            "question": row["question"].strip(), "answer": str(row["answer"]).strip().lower()}


def _majority_unanswerable(answers: list) -> bool:
    said = [str(a["answer"] if isinstance(a, dict) else a).strip().lower() for a in answers]
    return 2 * said.count("unanswerable") > len(said)


@hub_format("vizwiz")
def vizwiz(row: dict, i: int, params: SplitParams) -> dict:
    """VizWiz, answerable or not: an `answerable` field wins; else more than half of the annotators said
    "unanswerable". Rows without either (the test split) are skipped."""
    out = {"id": row["question_id"], "image": row["image"], "question": row["question"].capitalize()}
    if row.get("answerable") is not None:
        return {**out, "answer": "answerable" if int(row["answerable"]) else "unanswerable"}
    if not row.get("answers"):
        return {**out, SKIP: "no answers"}
    return {**out, "answer": "unanswerable" if _majority_unanswerable(row["answers"]) else "answerable"}


@hub_format("aokvqa")
def aokvqa(row: dict, i: int, params: SplitParams) -> dict:
    """A-OKVQA multiple choice: the four choices as options A-D; rows without `correct_choice_idx` are skipped."""
    choices = list(row["choices"])
    out = {"id": row["question_id"], "image": row["image"], "question": f"{row['question']}\n{options_text(choices)}",
           ALLOWED: list(LETTERS[: len(choices)])}
    if row.get("correct_choice_idx") is None:
        return {**out, SKIP: "no correct_choice_idx"}
    return {**out, "answer": LETTERS[int(row["correct_choice_idx"])]}


@hub_format("scienceqa")
def scienceqa(row: dict, i: int, params: SplitParams) -> dict:
    """ScienceQA as lmms-eval asks it: `Context: {hint}` (when there is one), the question, options A-E; rows
    without an image (text-only questions of derek-thomas/ScienceQA) are skipped. There is no id column: the row
    number within its split is the id."""
    choices = list(row["choices"])
    context = f"Context: {row['hint']}\n" if row.get("hint") else ""
    out = {"id": f"{params.split}-{i}", "image": row["image"], "answer": LETTERS[int(row["answer"])],
           "question": f"{context}{row['question']}\n{options_text(choices)}", ALLOWED: list(LETTERS[: len(choices)])}
    return out if row["image"] else {**out, SKIP: "no image"}


# --- original releases: CLEVR and InstaOrder ------------------------------------------------------------------------
def _find(spec: DatasetSpec, root: Path, names: list[str], what: str, split: str) -> Path:
    for name in names:
        if (root / name).exists():
            return root / name
    raise MissingSplit(f"dataset {spec.name}: no {what} for split {split!r} under {root} (looked for "
                       f"{', '.join(names)}); point --source at the release's folder")


def _root(spec: DatasetSpec, release: str) -> Path:
    root = spec.resolve(spec.source)
    if not root.is_dir():
        raise SnError(f"dataset {spec.name}: {release} folder {root} not found; download the release and point "
                      "--source at its folder")
    return root


def _json(spec: DatasetSpec, path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SnError(f"dataset {spec.name}: cannot read {path} ({exc})") from None


class ClevrParams(SplitParams):
    split: str = "val"
    task: Literal["yesno", "count"] = "yesno"


CLEVR_ANSWERS = {"yesno": {"yes", "no"}, "count": {str(k) for k in range(11)}}


@reader("clevr", ClevrParams)
def read_clevr(spec: DatasetSpec, params: ClevrParams) -> Rows:
    """CLEVR v1.0 (`questions/CLEVR_<split>_questions.json`, `images/<split>/`): the questions whose answer is in
    the task's vocabulary (yes/no, or a count 0-10); questions without an answer (the test split) are skipped."""
    root = _root(spec, "CLEVR v1.0")
    name = f"CLEVR_{params.split}_questions.json"
    questions = _json(spec, _find(spec, root, [f"questions/{name}", name], "questions file", params.split))
    images = _find(spec, root, [f"images/{params.split}", params.split], "image folder", params.split)
    rows = []
    for i, q in enumerate(questions.get("questions", [])):
        try:
            answer = q.get("answer")
            row = {"id": f"{params.split}-{q.get('question_index', i)}", "image": str(images / q["image_filename"]),
                   "question": q["question"], "answer": answer}
        except KeyError as exc:
            raise SnError(f"dataset {spec.name}: question {i} of {name}: missing field {exc.args[0]!r}") from None
        if answer is None:
            rows.append({**row, SKIP: "no answer"})
        elif str(answer) in CLEVR_ANSWERS[params.task]:
            rows.append(row)
    return rows


class InstaOrderParams(SplitParams):
    split: str = "val"
    task: Literal["depth", "occlusion"] = "depth"


FIRST, SECOND = "red", "blue"  # the box colours marking the pair's first and second instance
RELATION = re.compile(r"^\s*(\d+)\s*([<=>])\s*(\d+)\s*$")


def _relations(spec: DatasetSpec, entries: list[dict], where: str) -> list[tuple[int, str, int, dict]]:
    """(i, op, j, entry) for every relation in an InstaOrder order list ("0<2 & 2<0" holds two)."""
    out = []
    for entry in entries or []:
        for part in str(entry.get("order", "")).split("&"):
            m = RELATION.match(part)
            if not m:
                raise SnError(f"dataset {spec.name}: {where}: cannot read order {entry.get('order')!r}")
            a, op, b = int(m[1]), m[2], int(m[3])
            out.append((b, "<", a, entry) if op == ">" else (a, op, b, entry))
    return out


def depth_answer(rels: list[tuple[int, str, int, dict]], a: int, b: int) -> str | None:
    """Which of instances a < b is nearer: "first" (a), "second" (b) or "same"; None when the pair has no depth
    annotation. Of contradicting annotations, the one more annotators gave wins."""
    found = [(e.get("count", 0), op, i) for i, op, j, e in rels if {i, j} == {a, b}]
    if not found:
        return None
    _, op, i = max(found, key=lambda f: f[0])
    return "same" if op == "=" else ("first" if i == a else "second")


def occlusion_answer(rels: list[tuple[int, str, int, dict]], a: int, b: int) -> str:
    """Does instance a occlude b ("i<j": i occludes j; a mutual occlusion counts; an unlisted pair is "no")."""
    return "yes" if any(op == "<" and (i, j) == (a, b) for i, op, j, _ in rels) else "no"


QUESTIONS = {
    "depth": "Which is closer to the camera: the {a} in the red box (first) or the {b} in the blue box (second)?",
    "occlusion": "Does the {a} in the red box occlude the {b} in the blue box?",
}


@reader("instaorder", InstaOrderParams)
def read_instaorder(spec: DatasetSpec, params: InstaOrderParams) -> Rows:
    """InstaOrder on COCO 2017: one question per unordered pair of a record's instances, the lower index marked
    first (red box), the other second (blue box). Depth: pairs with a depth annotation; occlusion: every pair."""
    root = _root(spec, "InstaOrder/COCO")
    s = params.split
    order = _json(spec, _find(spec, root, [f"InstaOrder_{s}2017.json", f"annotations/InstaOrder_{s}2017.json"],
                              "InstaOrder file", s))
    coco = _json(spec, _find(spec, root, [f"annotations/instances_{s}2017.json", f"instances_{s}2017.json"],
                             "COCO instances file", s))
    images = _find(spec, root, [f"{s}2017", f"images/{s}2017"], "COCO image folder", s)
    files = {img["id"]: img["file_name"] for img in coco.get("images", [])}
    names = {c["id"]: c["name"] for c in coco.get("categories", [])}
    anns = {a["id"]: a for a in coco.get("annotations", [])}
    rows = []
    for r, rec in enumerate(order.get("annotations", [])):
        where = f"InstaOrder record {r} (image {rec.get('image_id')})"
        ids = rec.get("instance_ids") or []
        missing = [x for x in ids if x not in anns]
        if missing or rec.get("image_id") not in files:
            what = f"annotation ids {missing}" if missing else f"image id {rec.get('image_id')}"
            raise SnError(f"dataset {spec.name}: {where}: {what} not in the COCO instances file")
        rels = _relations(spec, rec.get(params.task), where)
        path = images / files[rec["image_id"]]
        if not path.is_file():  # here, where the record is known; the sample id alone would not name the image's record
            raise SnError(f"dataset {spec.name}: {where}: image file {path} not found")
        for a, b in combinations(range(len(ids)), 2):
            answer = depth_answer(rels, a, b) if params.task == "depth" else occlusion_answer(rels, a, b)
            if answer is None:
                continue
            first, second = anns[ids[a]], anns[ids[b]]
            question = QUESTIONS[params.task].format(a=names.get(first["category_id"], "object"),
                                                     b=names.get(second["category_id"], "object"))
            marked = Marked(path, ((tuple(first["bbox"]), FIRST), (tuple(second["bbox"]), SECOND)))
            rows.append({"id": f"{rec['image_id']}-{ids[a]}-{ids[b]}", "image": marked, "question": question,
                         "answer": answer})
    return rows
