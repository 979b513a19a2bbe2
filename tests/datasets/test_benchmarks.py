"""Each built-in benchmark spec loads its fixture (published schema) into the right ids, classes, labels, prompts,
options and skip counts; expectations are recomputed here from the fixture's own records."""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import numpy as np
import pytest

from sn_store.datasets import load_dataset, resolve_spec
from sn_store.errors import SnError

from .fixtures import LETTERS

SHORT = "Answer the question using a single word or phrase."
MC = "Answer with the option's letter from the given choices directly."


def by_id(ds):
    return {s.id: s for s in ds.samples}


@pytest.mark.parametrize("name,key", [("pope", "pope"), ("pope-random", "pope-random"),
                                      ("pope-adversarial", "pope-adversarial"), ("pope-popular", "pope-popular")])
def test_pope(bench, name, key):
    ds = load_dataset(name, source=str(bench.pope))
    rows = bench.data[key]
    want = {f"{r['category']}-{r['question_id']}": r for r in rows}
    got = by_id(ds)
    assert set(got) == set(want) and len(ds) == len(rows)  # default: the whole split, cut in halves
    for sid, s in got.items():
        assert s.question == f"{want[sid]['question'].strip()}\n{SHORT}"
        assert ds.spec.classes[s.label] == want[sid]["answer"]
        assert np.asarray(s.load_image()).tolist() == np.asarray(
            __import__("PIL.Image").Image.open(__import__("io").BytesIO(want[sid]["image"]["bytes"]))).tolist()
    assert Counter(ds.split) == {"probe": len(rows) // 2, "eval": len(rows) - len(rows) // 2}
    assert ds.skipped == 0 and ds.class_mask is None


def test_vizwiz_majority_and_skips(bench):
    ds = load_dataset("vizwiz", source=str(bench.vizwiz))
    rows = [r for r in bench.data["vizwiz"] if r["answers"]]
    assert ds.skipped == len(bench.data["vizwiz"]) - len(rows) == 2
    got = by_id(ds)
    for r in rows:
        unanswerable = sum(a == "unanswerable" for a in r["answers"]) > len(r["answers"]) / 2
        s = got[r["question_id"]]
        assert ds.spec.classes[s.label] == ("unanswerable" if unanswerable else "answerable")
        assert s.question.startswith(r["question"][0].upper() + r["question"][1:].lower() + "\nWhen the provided")


def test_vizwiz_answerable_field_wins_in_a_save_to_disk_copy(bench, tmp_path):
    import datasets

    rows = [{**r, "answerable": int(i % 2)} for i, r in enumerate(bench.data["vizwiz"]) if r["answers"]]
    saved = datasets.Dataset.from_list(rows).cast_column("image", datasets.Image())
    saved.save_to_disk(str(tmp_path / "vizwiz-saved"))
    ds = load_dataset("vizwiz", source=str(tmp_path / "vizwiz-saved"))
    got = by_id(ds)
    assert all(ds.spec.classes[got[r["question_id"]].label] == ("answerable" if r["answerable"] else "unanswerable")
               for r in rows)


def test_aokvqa_probes_train_and_reports_validation(bench):
    spec = resolve_spec("aokvqa").model_copy(update={"probe_size": 8})
    ds = load_dataset(spec, source=str(bench.aokvqa))
    got = by_id(ds)
    train = {r["question_id"] for r in bench.data["aokvqa"]["train"]}
    assert {s.id for s, part in zip(ds.samples, ds.split) if part == "probe"} <= train
    assert ds.split.count("probe") == 8
    assert {s.id for s, part in zip(ds.samples, ds.split) if part == "eval"} == {
        r["question_id"] for r in bench.data["aokvqa"]["validation"]}
    for r in bench.data["aokvqa"]["validation"]:
        s = got[r["question_id"]]
        options = "\n".join(f"{LETTERS[j]}. {c}" for j, c in enumerate(r["choices"]))
        assert s.question == f"{r['question']}\n{options}\n{MC}"
        assert s.label == r["correct_choice_idx"]


@pytest.mark.parametrize("copy,skipped", [("scienceqa", 0), ("scienceqa_derek", 10)])
def test_scienceqa_options_mask_and_skips(bench, copy, skipped):
    ds = load_dataset("scienceqa-img", source=str(getattr(bench, copy)))
    assert ds.skipped == skipped
    rows = {f"{split}-{i}": r for split, rs in bench.data[copy].items() for i, r in enumerate(rs) if r["image"]}
    assert {s.id for s in ds.samples} <= set(rows)
    assert {s.id.split("-")[0] for s, p in zip(ds.samples, ds.split) if p == "eval"} == {"test"}
    for s, allowed in zip(ds.samples, ds.class_mask):
        r = rows[s.id]
        context = f"Context: {r['hint']}\n" if r["hint"] else ""
        options = "\n".join(f"{LETTERS[j]}. {c}" for j, c in enumerate(r["choices"]))
        assert s.question == f"{context}{r['question']}\n{options}\n{MC}"
        assert s.label == r["answer"]
        assert allowed.tolist() == [j < len(r["choices"]) for j in range(5)]


@pytest.mark.parametrize("name,vocab", [("clevr-yesno", ["no", "yes"]),
                                        ("clevr-count", [str(k) for k in range(11)])])
def test_clevr(bench, name, vocab):
    spec = resolve_spec(name).model_copy(update={"probe_size": 100, "eval_size": 100})
    ds = load_dataset(spec, source=str(bench.clevr))
    want = {f"{split}-{q['question_index']}": q for split, qs in bench.data["clevr"].items() for q in qs
            if q["answer"] in vocab}
    assert {s.id for s in ds.samples} == set(want)  # sizes are "at most": the small splits are taken whole
    for s, part in zip(ds.samples, ds.split):
        q = want[s.id]
        assert part == {"train": "probe", "val": "eval"}[q["split"]]
        assert ds.spec.classes[s.label] == q["answer"] and s.question == f"{q['question']}\n{SHORT}"
        assert s.image == bench.clevr / "images" / q["split"] / q["image_filename"]


def test_clevr_falls_back_to_cutting_val(bench, tmp_path):
    import shutil

    shutil.copytree(bench.clevr, tmp_path / "clevr")
    (tmp_path / "clevr" / "questions" / "CLEVR_train_questions.json").unlink()
    spec = resolve_spec("clevr-yesno").model_copy(update={"probe_size": 4, "eval_size": 4})
    ds = load_dataset(spec, source=str(tmp_path / "clevr"))
    assert Counter(ds.split) == {"probe": 4, "eval": 4} and all(s.id.startswith("val-") for s in ds.samples)


def _pairs(bench, split):
    data = bench.data["instaorder"][split]
    for rec in data["records"]:
        for a, b in combinations(range(len(rec["instance_ids"])), 2):
            yield rec, a, b


@pytest.mark.parametrize("task", ["depth", "occlusion"])
def test_instaorder(bench, task):
    spec = resolve_spec(f"instaorder-{task}").model_copy(update={"probe_size": 100, "eval_size": 100})
    ds = load_dataset(spec, source=str(bench.instaorder))
    want = {}
    for split in ("train", "val"):
        for rec, a, b in _pairs(bench, split):
            orders = [e["order"] for e in rec[task]]
            if task == "depth":  # independent reading of the documented construction
                answer = ("first" if f"{a}<{b}" in orders else "second" if f"{b}<{a}" in orders else
                          "same" if f"{a}={b}" in orders or f"{b}={a}" in orders else None)
            else:
                rels = [p.strip() for o in orders for p in o.split("&")]
                answer = "yes" if f"{a}<{b}" in rels else "no"
            if answer is not None:
                want[f"{rec['image_id']}-{rec['instance_ids'][a]}-{rec['instance_ids'][b]}"] = answer
    assert {s.id: ds.spec.classes[s.label] for s in ds.samples} == want
    s = ds.samples[0]
    img = np.asarray(s.load_image())
    x, y, w = 4, 5, 12  # the first instance's box of the fixture: drawn red
    assert tuple(img[y, x + w // 2]) == (255, 0, 0)
    assert "in the red box" in s.question and "in the blue box" in s.question


def test_instaorder_unknown_annotation_names_the_record(bench, tmp_path):
    import json
    import shutil

    shutil.copytree(bench.instaorder, tmp_path / "io")
    path = tmp_path / "io" / "InstaOrder_val2017.json"
    data = json.loads(path.read_text())
    data["annotations"][2]["instance_ids"][1] = 999
    path.write_text(json.dumps(data))
    spec = resolve_spec("instaorder-depth").model_copy(update={"probe_split": None, "eval_split": None,
                                                               "probe_size": 4, "eval_size": 4})
    with pytest.raises(SnError, match=r"record 2 .*annotation ids \[999\]"):
        load_dataset(spec, source=str(tmp_path / "io"))


def test_missing_release_image_names_the_sample(bench, tmp_path):
    import shutil

    shutil.copytree(bench.clevr, tmp_path / "clevr")
    (tmp_path / "clevr" / "images" / "val" / "CLEVR_val_000002.png").unlink()
    spec = resolve_spec("clevr-yesno").model_copy(update={"probe_size": 100, "eval_size": 100})
    with pytest.raises(SnError, match=r"sample val-\d+: image file .*CLEVR_val_000002.png not found"):
        load_dataset(spec, source=str(tmp_path / "clevr"))


def samples_of(ds):
    return [(s.id, s.question, s.label, np.asarray(s.load_image()).tolist()) for s in ds.samples], ds.split


@pytest.mark.parametrize("name", ["pope", "pope-random", "pope-popular", "pope-adversarial"])
def test_pope_original_release_reads_as_the_hub_copy(bench, name):
    """RUCAIBox/POPE's JSON lines with COCO val2014: the same samples as the hub's Full config (`pope`: all three)."""
    ds = load_dataset(name, source=str(bench.pope_release))
    if name == "pope":
        want = {f"{c}-{r['question_id']}": r for c in ("adversarial", "popular", "random")
                for r in bench.data[f"pope-{c}"]}
        assert {s.id for s in ds.samples} == set(want)
        assert all(ds.spec.classes[s.label] == want[s.id]["answer"] and
                   s.question == f"{want[s.id]['question'].strip()}\n{SHORT}" for s in ds.samples)
    else:
        assert samples_of(ds) == samples_of(load_dataset(name, source=str(bench.pope)))
    assert all(str(s.image).startswith(str(bench.pope_release / "val2014")) for s in ds.samples)


def test_pope_release_errors_name_the_line_and_the_images(bench, tmp_path):
    import shutil

    shutil.copytree(bench.pope_release, tmp_path / "POPE")
    path = tmp_path / "POPE" / "output" / "coco" / "coco_pope_random.json"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1].replace('"label"', '"answer"'), *lines[2:]]))
    with pytest.raises(SnError, match=r"^dataset pope-random: coco_pope_random.json line 2: missing field 'label'$"):
        load_dataset("pope-random", source=str(tmp_path / "POPE"))
    path.write_text("\n".join(lines))
    shutil.rmtree(tmp_path / "POPE" / "val2014")
    with pytest.raises(SnError, match=r"COCO val2014 image COCO_val2014_\d+.jpg not found in val2014, "):
        load_dataset("pope-random", source=str(tmp_path / "POPE"))
    (tmp_path / "POPE" / "output" / "coco" / "coco_pope_popular.json").unlink()
    with pytest.raises(SnError, match=r"no coco_pope_popular.json in .* for split 'popular'"):
        load_dataset("pope-popular", source=str(tmp_path / "POPE"))
