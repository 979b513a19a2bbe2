"""Every reader yields the same samples for the same data, and the split is stratified and deterministic."""

from __future__ import annotations

import base64
import csv
import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from sn_store.datasets import load_dataset, load_spec_file
from sn_store.datasets.dataset import stratified_split
from sn_store.errors import SnError

CLASSES = ["no", "yes"]


def make_images(folder, n=12):
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        label = CLASSES[i % 2]
        path = folder / f"img{i}.png"
        Image.new("RGB", (16, 16), (i * 20, 255 - i * 20, 7)).save(path)
        rows.append({"id": f"s{i}", "image": f"images/{path.name}", "question": f"Q{i}?", "answer": label})
    return rows


def write_spec(tmp_path, fmt, source, **extra):
    spec = {"name": f"t-{fmt}", "format": fmt, "source": source, "classes": CLASSES, "seed": 1, **extra}
    path = tmp_path / f"{fmt}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def b64(path):
    return base64.b64encode(path.read_bytes()).decode()


@pytest.fixture
def rows(tmp_path):
    return make_images(tmp_path / "images")


def as_tuples(ds):
    return [(s.id, s.question, s.label, np.asarray(s.load_image()).tobytes()) for s in ds.samples], ds.split


def test_all_file_formats_agree(tmp_path, rows):
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with open(tmp_path / "d.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(tmp_path / "d.tsv", "w", newline="") as fh:  # VLMEvalKit style: base64 images inline
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
        w.writeheader()
        w.writerows([{**r, "image": b64(tmp_path / r["image"])} for r in rows])
    parquet_rows = [{**r, "image": {"bytes": (tmp_path / r["image"]).read_bytes(), "path": None}} for r in rows]
    pq.write_table(pa.Table.from_pylist(parquet_rows), tmp_path / "d.parquet")

    loaded = [load_dataset(load_spec_file(write_spec(tmp_path, fmt, f"d.{fmt}")))
              for fmt in ("jsonl", "csv", "tsv", "parquet")]
    first = as_tuples(loaded[0])
    assert len(first[0]) == 12
    for ds in loaded[1:]:
        assert as_tuples(ds) == first
    assert len({ds.content_hash for ds in loaded}) >= 1  # hashes are computed for each


def test_folder_format_uses_subfolders_as_labels(tmp_path):
    for label in CLASSES:
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / "imgs" / label / f"{i}.png")
    ds = load_dataset(load_spec_file(write_spec(tmp_path, "folder", "imgs", question_field=None,
                                                question_template="Is it a yes image?")))
    assert Counter(s.label for s in ds.samples) == {0: 3, 1: 3}
    assert all(s.question == "Is it a yes image?" for s in ds.samples)


def test_question_template_and_task_suffix(tmp_path, rows):
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps({**r, "object": "cat"}) for r in rows))
    ds = load_dataset(load_spec_file(write_spec(tmp_path, "jsonl", "d.jsonl", question_template="Is there a {object}?",
                                                task_suffix="One word.")))
    assert ds.samples[0].question == "Is there a cat?\nOne word."


def test_stratified_split_is_deterministic_and_proportional():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    a = stratified_split(labels, 50, 30, seed=5)
    assert (a == stratified_split(labels, 50, 30, seed=5)).all()
    assert (a != stratified_split(labels, 50, 30, seed=6)).any()
    probe = Counter(labels[a == "probe"].tolist())
    assert probe == {0: 30, 1: 15, 2: 5}
    assert (a == "eval").sum() == 30 and (a == "").sum() == 20


def test_synthetic_suite_is_deterministic():
    a, b = load_dataset("shapes-color"), load_dataset("shapes-color")
    assert a.content_hash == b.content_hash
    assert as_tuples(a) == as_tuples(b)
    assert Counter(a.labels.tolist()) == {0: 64, 1: 64, 2: 64, 3: 64}


@pytest.mark.parametrize("bad,msg", [
    ({"colour": "red"}, "colour: unknown key"),
    ({"classes": ["yes"]}, "classes"),
    ({"classes": ["a", "a"]}, "classes must be distinct"),
    ({"verbalizers": {"no": "No"}}, "verbalizers must name exactly the classes"),
    ({"format": "xml"}, "unknown format 'xml'"),
])
def test_spec_errors_name_the_field(tmp_path, rows, bad, msg):
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    path = write_spec(tmp_path, "jsonl", "d.jsonl", **bad)
    with pytest.raises(SnError, match=msg):
        load_dataset(load_spec_file(path))
