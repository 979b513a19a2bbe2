"""Benchmark fixtures in the exact published schemas (see benchmarks.md), with generated images: hub-layout parquet
folders (image structs {bytes, path}, the `huggingface` schema metadata), a save_to_disk folder, VLMEvalKit TSVs
(base64 and pointer rows; image_path), CLEVR v1.0's JSON and PNGs, InstaOrder's JSON with COCO instances."""

from __future__ import annotations

import base64
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

LETTERS = "ABCDE"


def png(i: int, size: tuple[int, int] = (24, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)).save(buf, format="PNG")
    return buf.getvalue()


def _feature(value) -> dict:
    if isinstance(value, dict) and "bytes" in value:
        return {"_type": "Image"}
    if isinstance(value, list):
        return {"feature": {"dtype": "string", "_type": "Value"}, "_type": "List"}
    dtype = "int64" if isinstance(value, int) else "string"
    return {"dtype": dtype, "_type": "Value"}


def write_shard(path: Path, rows: list[dict]) -> None:
    """One hub parquet shard: the `datasets` features ride in the schema metadata, as on the hub."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows)
    features = {k: _feature(next((r[k] for r in rows if r[k] is not None), "")) for k in rows[0]}
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    pq.write_table(table.replace_schema_metadata(meta), path)


def image_struct(i: int, name: str) -> dict:
    return {"bytes": png(i), "path": name}


def pope_rows(category: str | None, n: int, offset: int = 0) -> list[dict]:
    cats = [category] if category else ["adversarial", "popular", "random"]
    rows = []
    for i in range(n):
        cat = cats[i % len(cats)]
        rows.append({"id": str(offset + i), "question_id": str(i // len(cats) + 1),
                     "question": f" Is there a {['dog', 'cup', 'car'][i % 3]} in the image? ",
                     "answer": ["yes", "no"][(i // len(cats)) % 2], "image_source": f"COCO_val2014_{offset + i:012d}",
                     "image": image_struct(offset + i, f"{i}.jpg"), "category": cat})
    return rows


def vizwiz_rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        k = [0, 3, 5, 6, 10][i % 5]  # annotators who said "unanswerable": >5 of 10 makes it unanswerable
        answers = ["unanswerable"] * k + ["a red mug"] * (10 - k) if i < n - 2 else []
        rows.append({"question_id": f"VizWiz_val_{i:08d}.jpg", "image": image_struct(100 + i, f"{i}.jpg"),
                     "question": f"what is THIS thing number {i}?", "answers": answers, "category": "other"})
    return rows


def aokvqa_rows(n: int, offset: int) -> list[dict]:
    return [{"image": image_struct(200 + offset + i, f"{i}.jpg"), "question_id": f"q{offset + i}",
             "question": f"What is used for task {i}?", "choices": [f"c{i}-{j}" for j in range(4)],
             "correct_choice_idx": i % 4, "direct_answers": ["x"] * 10, "difficult_direct_answer": False,
             "rationales": ["because"]} for i in range(n)]


def scienceqa_rows(n: int, offset: int, text_only_every: int = 0) -> list[dict]:
    rows = []
    for i in range(n):
        k = 2 + i % 4  # 2 to 5 options
        no_image = text_only_every and i % text_only_every == 0
        rows.append({"image": None if no_image else image_struct(300 + offset + i, "image.png"),
                     "question": f"Which is right {i}?", "choices": [f"opt{j}" for j in range(k)],
                     "answer": (i * 7) % k, "hint": f"Hint {i}." if i % 3 else "", "task": "closed choice",
                     "grade": "grade3", "subject": "natural science", "topic": "t", "category": "c", "skill": "s",
                     "lecture": "", "solution": ""})
    return rows


def write_pope_release(root: Path, data: dict) -> None:
    """RUCAIBox/POPE's layout: `output/coco/coco_pope_<category>.json` (JSON lines) and COCO's `val2014/` images,
    from the same rows as the hub copy's `Full` config."""
    (root / "output" / "coco").mkdir(parents=True)
    (root / "val2014").mkdir()
    for cat in ("adversarial", "popular", "random"):
        lines = []
        for r in data[f"pope-{cat}"]:
            name = f"{r['image_source']}.jpg"
            (root / "val2014" / name).write_bytes(r["image"]["bytes"])
            lines.append(json.dumps({"question_id": int(r["question_id"]), "image": name, "text": r["question"],
                                     "label": r["answer"]}))
        (root / "output" / "coco" / f"coco_pope_{cat}.json").write_text("\n".join(lines) + "\n")


def write_clevr(root: Path) -> dict:
    answers = ["yes", "no", "0", "3", "10", "blue", "cube", "1", "yes", "no"]
    out = {}
    for split, n in (("train", 30), ("val", 30)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        qs = []
        for i in range(n):
            img = f"CLEVR_{split}_{i // 3:06d}.png"
            if i % 3 == 0:
                (root / "images" / split / img).write_bytes(png(400 + i))
            qs.append({"image_index": i // 3, "image_filename": img, "question": f"Question {i} about the scene?",
                       "answer": answers[i % len(answers)], "question_family_index": i % 90, "split": split,
                       "question_index": i})
        (root / "questions").mkdir(exist_ok=True)
        (root / "questions" / f"CLEVR_{split}_questions.json").write_text(
            json.dumps({"info": {"split": split, "version": "1.0"}, "questions": qs}))
        out[split] = qs
    return out


def write_instaorder(root: Path) -> dict:
    """Each record has three instances; depth annotates two of the three pairs, occlusion lists a mutual pair."""
    out = {}
    cats = [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 62, "name": "chair"}]
    depth_orders = [["0<1", "1<2"], ["1<0", "0=2"], ["2<0", "1=2"], ["0<2", "2<1"]]
    occ_orders = [["0<2 & 2<0", "1<0"], ["0<1"], [], ["2<1"]]
    for split, n in (("train", 8), ("val", 8)):
        (root / f"{split}2017").mkdir(parents=True, exist_ok=True)
        images, anns, records = [], [], []
        for r in range(n):
            image_id = 1000 * (split == "val") + r + 1
            name = f"{image_id:012d}.jpg"
            Image.open(io.BytesIO(png(500 + image_id, (64, 48)))).save(root / f"{split}2017" / name, format="JPEG")
            images.append({"id": image_id, "file_name": name, "width": 64, "height": 48})
            ids = []
            for k in range(3):
                ann_id = image_id * 10 + k
                anns.append({"id": ann_id, "image_id": image_id, "category_id": cats[k]["id"],
                             "bbox": [4.0 + 10 * k, 5.0, 12.0, 20.0], "area": 240.0, "iscrowd": 0,
                             "segmentation": [[4, 5, 16, 5, 16, 25]]})
                ids.append(ann_id)
            records.append({"image_id": image_id, "instance_ids": ids,
                            "occlusion": [{"order": o, "count": 3} for o in occ_orders[r % 4]],
                            "depth": [{"order": o, "count": 2, "overlap": False} for o in depth_orders[r % 4]]})
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"instances_{split}2017.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": cats}))
        (root / f"InstaOrder_{split}2017.json").write_text(json.dumps({"annotations": records}))
        out[split] = {"records": records, "categories": cats}
    return out


def write_tsv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
        w.writeheader()
        w.writerows(rows)


def mcq_tsv_rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        k = 2 + i % 3  # 2 to 4 options; the others empty
        image = str(i - 1) if i % 4 == 1 else base64.b64encode(png(600 + i)).decode()  # pointer rows reuse an image
        rows.append({"index": str(i), "question": f"Which colour {i}?", "hint": f"Look {i}" if i % 2 else "",
                     **{L: (f"o{i}{L}" if j < k else "") for j, L in enumerate("ABCD")},
                     "answer": LETTERS[i % k], "category": "cat", "l2-category": "l2", "split": "dev",
                     "image": image})
    return rows


@dataclass
class Fixtures:
    root: Path
    pope: Path = None
    pope_release: Path = None
    vizwiz: Path = None
    vizwiz_saved: Path = None
    aokvqa: Path = None
    scienceqa: Path = None
    scienceqa_derek: Path = None
    clevr: Path = None
    instaorder: Path = None
    mcq_tsv: Path = None
    yesno_tsv: Path = None
    data: dict = field(default_factory=dict)


def build(root: Path) -> Fixtures:
    f = Fixtures(root)
    f.pope = root / "POPE"
    f.data["pope"] = pope_rows(None, 24)
    write_shard(f.pope / "data" / "test-00000-of-00001.parquet", f.data["pope"])
    for j, cat in enumerate(("adversarial", "popular", "random")):
        f.data[f"pope-{cat}"] = pope_rows(cat, 12, offset=100 * (j + 1))
        write_shard(f.pope / "Full" / f"{cat}-00000-of-00001.parquet", f.data[f"pope-{cat}"])
    f.pope_release = root / "POPE-release"
    write_pope_release(f.pope_release, f.data)
    f.vizwiz = root / "VizWiz-VQA"
    f.data["vizwiz"] = vizwiz_rows(22)
    write_shard(f.vizwiz / "data" / "val-00000-of-00002.parquet", f.data["vizwiz"][:11])
    write_shard(f.vizwiz / "data" / "val-00001-of-00002.parquet", f.data["vizwiz"][11:])
    f.aokvqa = root / "A-OKVQA"
    f.data["aokvqa"] = {"train": aokvqa_rows(24, 0), "validation": aokvqa_rows(12, 100)}
    for split, rows in f.data["aokvqa"].items():
        write_shard(f.aokvqa / "data" / f"{split}-00000-of-00001.parquet", rows)
    f.scienceqa = root / "ScienceQA"
    f.data["scienceqa"] = {"validation": scienceqa_rows(24, 0), "test": scienceqa_rows(16, 100)}
    for split, rows in f.data["scienceqa"].items():
        write_shard(f.scienceqa / "ScienceQA-IMG" / f"{split}-00000-of-00001.parquet", rows)
    f.scienceqa_derek = root / "derek-ScienceQA"
    f.data["scienceqa_derek"] = {"validation": scienceqa_rows(30, 0, 5), "test": scienceqa_rows(20, 100, 5)}
    for split, rows in f.data["scienceqa_derek"].items():
        write_shard(f.scienceqa_derek / "data" / f"{split}-00000-of-00001.parquet", rows)
    f.clevr = root / "CLEVR_v1.0"
    f.data["clevr"] = write_clevr(f.clevr)
    f.instaorder = root / "InstaOrder"
    f.data["instaorder"] = write_instaorder(f.instaorder)
    f.mcq_tsv = root / "LMUData" / "MMTest.tsv"
    f.mcq_tsv.parent.mkdir(parents=True)
    f.data["mcq"] = mcq_tsv_rows(16)
    write_tsv(f.mcq_tsv, f.data["mcq"])
    f.yesno_tsv = root / "LMUData" / "YNTest.tsv"
    (root / "LMUData" / "images" / "YNTest").mkdir(parents=True)
    yn = []
    for i in range(12):
        (root / "LMUData" / "images" / "YNTest" / f"{i}.png").write_bytes(png(700 + i))
        yn.append({"index": str(i), "question": f"Is it item {i}?", "answer": ["Yes", "No"][i % 2],
                   "category": "existence", "image_path": f"images/YNTest/{i}.png"})
    f.data["yesno"] = yn
    write_tsv(f.yesno_tsv, yn)
    return f
