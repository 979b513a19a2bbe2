"""Spec and input refusals, each one line naming the field, sample or row: empty questions, unknown format params,
an internal key, template attribute access, oversized images, missing columns/images, labels outside the classes;
and probe_per_class draws N per class, deterministically from the seed."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import yaml
from PIL import Image

from sn_store.datasets import load_dataset, load_spec_file, parse_spec, resolve_spec
from sn_store.errors import SnError

from .fixtures import write_shard


def jsonl_spec(tmp_path, rows, **extra):
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "format": "jsonl", "source": "d.jsonl", "classes": ["no", "yes"],
                                    **extra}))
    return path


@pytest.fixture
def rows(tmp_path):
    (tmp_path / "img").mkdir()
    out = []
    for i in range(8):
        Image.new("RGB", (8, 8), (i * 30, 0, 0)).save(tmp_path / "img" / f"{i}.png")
        out.append({"id": f"s{i}", "image": f"img/{i}.png", "question": f"Q{i}?", "answer": ["no", "yes"][i % 2],
                    "object": "cat"})
    return out


def test_whitespace_only_question_is_refused(tmp_path, rows):
    rows[3]["question"] = "  \n\t "
    with pytest.raises(SnError, match=r"sample s3: missing field 'question'"):
        load_dataset(load_spec_file(jsonl_spec(tmp_path, rows)))
    rows[3]["question"], rows[3]["object"] = "ok", "   "
    with pytest.raises(SnError, match=r"sample s3: the question is empty"):
        load_dataset(load_spec_file(jsonl_spec(tmp_path, rows, question_template="{object}")))


def test_unknown_format_params_are_refused(tmp_path, rows):
    with pytest.raises(SnError, match=r"params.colour: unknown key \(format 'jsonl' takes: none\)"):
        load_dataset(load_spec_file(jsonl_spec(tmp_path, rows, params={"colour": 1})))
    with pytest.raises(SnError, match=r"params.spilt: unknown key .*takes: split, config, revision"):
        load_dataset(resolve_spec("pope").model_copy(update={"params": {"spilt": "test"}}))
    with pytest.raises(SnError, match=r"params.n_samples: unknown key"):
        load_dataset(resolve_spec("shapes-exist").model_copy(update={"params": {"n_samples": 4}}))


def test_base_dir_is_not_a_spec_key(tmp_path, rows):
    with pytest.raises(SnError, match=r"base_dir: unknown key"):
        load_spec_file(jsonl_spec(tmp_path, rows, base_dir="/etc"))


@pytest.mark.parametrize("template", ["{question.__class__}", "{question[0]}", "{question!r}", "{question:>99}",
                                      "{0}"])
def test_question_template_substitutes_plain_fields_only(tmp_path, rows, template):
    with pytest.raises(SnError, match=r"question_template: only plain \{field\} names"):
        load_spec_file(jsonl_spec(tmp_path, rows, question_template=template))


def test_question_template_plain_fields_and_escapes(tmp_path, rows):
    ds = load_dataset(load_spec_file(jsonl_spec(tmp_path, rows, question_template="Is a {object} here {{x}}?")))
    assert ds.samples[0].question == "Is a cat here {x}?"


def test_image_over_the_pixel_limit_names_the_sample(tmp_path, rows, monkeypatch):
    Image.new("RGB", (3000, 2000)).save(tmp_path / "img" / "5.png")  # 6 MP
    path = jsonl_spec(tmp_path, rows, max_pixels=5_000_000)
    with pytest.raises(SnError, match=r"sample s5: image .*5.png is 3000x2000 = 6.0 megapixels, over the limit of 5"):
        load_dataset(load_spec_file(path))
    path = jsonl_spec(tmp_path, rows)
    monkeypatch.setenv("SN_MAX_PIXELS", "1000000")
    with pytest.raises(SnError, match=r"sample s5: .*over the limit of 1 MP"):
        load_dataset(load_spec_file(path))
    monkeypatch.delenv("SN_MAX_PIXELS")
    assert len(load_dataset(load_spec_file(path))) == 8  # the default (50 MP) lets it through


def test_label_outside_classes_and_missing_image_name_the_sample(tmp_path, rows):
    bad = [dict(r) for r in rows]
    bad[2]["answer"] = "maybe"
    with pytest.raises(SnError, match=r"sample s2: label 'maybe' is not one of the classes"):
        load_dataset(load_spec_file(jsonl_spec(tmp_path, bad)))
    bad = [dict(r) for r in rows]
    bad[4]["image"] = "img/nope.png"
    with pytest.raises(SnError, match=r"sample s4: image file .*nope.png not found"):
        load_dataset(load_spec_file(jsonl_spec(tmp_path, bad)))


def test_missing_column_names_the_row_and_column(bench, tmp_path):
    from .fixtures import pope_rows

    rows = [{k: v for k, v in r.items() if k != "category"} for r in pope_rows("random", 6)]
    write_shard(tmp_path / "POPE" / "Full" / "random-00000-of-00001.parquet", rows)
    with pytest.raises(SnError, match=r"row 0 of split 'random' of config 'Full': missing column 'category'"):
        load_dataset("pope-random", source=str(tmp_path / "POPE"))
    with pytest.raises(SnError, match=r"no parquet shards of split 'popular' of config 'Full'"):
        load_dataset("pope-popular", source=str(tmp_path / "POPE"))


def test_probe_per_class_is_stratified_and_deterministic(bench):
    spec = resolve_spec("pope").model_copy(update={"probe_per_class": 3, "seed": 4})
    a, b = load_dataset(spec, source=str(bench.pope)), load_dataset(spec, source=str(bench.pope))
    probe = [s for s, p in zip(a.samples, a.split) if p == "probe"]
    assert Counter(a.spec.classes[s.label] for s in probe) == {"no": 3, "yes": 3}
    assert [s.id for s in a.samples] == [s.id for s in b.samples] and a.split == b.split
    assert a.split.count("eval") == 24 - 6  # the rest
    other = load_dataset(spec.model_copy(update={"seed": 5}), source=str(bench.pope))
    assert {s.id for s, p in zip(other.samples, other.split) if p == "probe"} != {s.id for s in probe}


def test_probe_split_needs_a_format_with_splits(tmp_path, rows):
    with pytest.raises(SnError, match=r"format 'jsonl' has no splits"):
        load_dataset(load_spec_file(jsonl_spec(tmp_path, rows, probe_split="a", eval_split="b")))
    with pytest.raises(SnError, match=r"give both probe_split and eval_split"):
        parse_spec({"name": "x", "format": "pope", "source": "s", "classes": ["a", "b"], "probe_split": "a"}, "x")
    assert np.array_equal(*[load_dataset(load_spec_file(jsonl_spec(tmp_path, rows))).labels for _ in range(2)])


def test_image_field_may_name_a_list_column(tmp_path, rows):
    multi = [{**r, "image": [r["image"], rows[(i + 1) % len(rows)]["image"]]} for i, r in enumerate(rows)]
    ds = load_dataset(load_spec_file(jsonl_spec(tmp_path, multi)))
    s = ds.samples[0]
    images = s.load_images()
    assert [np.asarray(im).tolist() for im in images] == [
        np.asarray(Image.open(p).convert("RGB")).tolist() for p in s.image]
    assert s.image[1] == tmp_path / multi[int(s.id[1:])]["image"][1]
    with pytest.raises(SnError, match=rf"sample {s.id}: has 2 images"):
        s.load_image()


# --- the benchmarks' own inputs ----------------------------------------------------------------------------------
def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text
    return text


def vlmevalkit_spec(path):
    return parse_spec({"name": "mm", "format": "vlmevalkit", "source": str(path), "classes": list("ABCD")}, "mm")


@pytest.mark.parametrize("column", ["question", "answer", "index"])
def test_vlmevalkit_tsv_without_a_required_column_names_it(bench, tmp_path, column):
    from .fixtures import write_tsv

    write_tsv(tmp_path / "mm.tsv", [{k: v for k, v in r.items() if k != column} for r in bench.data["mcq"]])
    with pytest.raises(SnError) as err:
        load_dataset(vlmevalkit_spec(tmp_path / "mm.tsv"))
    assert f"mm.tsv has no column {column!r}" in one_line(err)


def test_vlmevalkit_pointer_to_no_row_names_the_line(bench, tmp_path):
    from .fixtures import write_tsv

    rows = [dict(r) for r in bench.data["mcq"]]
    assert len(rows[5]["image"]) <= 64  # a pointer row of the fixture
    rows[5]["image"] = "999"
    write_tsv(tmp_path / "mm.tsv", rows)
    with pytest.raises(SnError) as err:
        load_dataset(vlmevalkit_spec(tmp_path / "mm.tsv"))
    assert "mm.tsv line 7 (index 5): image '999' names no row with an image" in one_line(err)


def test_missing_instaorder_image_names_the_record_and_file(bench, tmp_path):
    import shutil

    shutil.copytree(bench.instaorder, tmp_path / "io")
    (tmp_path / "io" / "val2017" / "000000001003.jpg").unlink()
    with pytest.raises(SnError) as err:
        load_dataset("instaorder-occlusion", source=str(tmp_path / "io"))
    assert "InstaOrder record 2 (image 1003): image file " in one_line(err)
    assert str(tmp_path / "io" / "val2017" / "000000001003.jpg") in str(err.value)


@pytest.mark.parametrize("field", ["image_filename", "question"])
def test_missing_clevr_field_names_the_question(bench, tmp_path, field):
    import shutil

    shutil.copytree(bench.clevr, tmp_path / "clevr")
    path = tmp_path / "clevr" / "questions" / "CLEVR_val_questions.json"
    data = json.loads(path.read_text())
    del data["questions"][4][field]
    path.write_text(json.dumps(data))
    with pytest.raises(SnError) as err:
        load_dataset("clevr-yesno", source=str(tmp_path / "clevr"))
    assert f"question 4 of CLEVR_val_questions.json: missing field {field!r}" in one_line(err)


def test_probe_size_override_replaces_probe_per_class(bench, tmp_path):
    """`--probe-size` (ProbeConfig.probe_size) over a spec with probe_per_class: the override wins, validated."""
    from sn_store.pipeline import ProbeConfig, dataset_for

    spec = tmp_path / "pope-few.yaml"
    spec.write_text(yaml.safe_dump({**resolve_spec("pope").public_dict(), "name": "pope-few", "probe_per_class": 3}))
    config = ProbeConfig(dataset=str(spec), source=str(bench.pope))
    assert dataset_for(config).split.count("probe") == 6  # the spec's own: 3 per class
    ds = dataset_for(config.model_copy(update={"probe_size": 10, "eval_size": 4}))
    assert Counter(ds.split) == {"probe": 10, "eval": 4}
    assert ds.spec.probe_size == 10 and ds.spec.probe_per_class is None
    kept = dataset_for(config.model_copy(update={"eval_size": 4}))  # eval alone leaves the per-class draw alone
    assert Counter(kept.split) == {"probe": 6, "eval": 4}


def test_size_overrides_are_validated(bench):
    spec = resolve_spec("pope", str(bench.pope))
    with pytest.raises(SnError, match=r"dataset pope: probe_size: Input should be greater than or equal to 1"):
        spec.with_sizes(probe_size=0)
    assert spec.with_sizes() is spec
