"""VLMEvalKit TSVs (base64 and pointer rows, image_path; MCQ vs yes/no from the columns), `sn datasets import`,
the generic `hf` format on local copies, and the hub path: offline it fails in one line saying what to do."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from sn_store.datasets import load_dataset, load_spec_file, parse_spec
from sn_store.datasets.vlmevalkit import MCQ_SUFFIX, YESNO_SUFFIX, import_spec
from sn_store.errors import SnError


def pixels(data: bytes):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).tolist()


def test_vlmevalkit_mcq_with_pointer_rows(bench):
    spec = parse_spec(import_spec(bench.mcq_tsv), "mcq")
    assert spec.classes == ["A", "B", "C", "D"] and spec.format == "vlmevalkit"
    ds = load_dataset(spec.model_copy(update={"probe_size": 8}))
    rows = {r["index"]: r for r in bench.data["mcq"]}
    for s, allowed in zip(ds.samples, ds.class_mask):
        r = rows[s.id]
        options = [L for L in "ABCD" if r[L]]
        text = (f"Hint: {r['hint']}\n" if r["hint"] else "") + f"Question: {r['question']}\nOptions:\n"
        assert s.question == text + "\n".join(f"{L}. {r[L]}" for L in options) + f"\n{MCQ_SUFFIX}"
        assert spec.classes[s.label] == r["answer"]
        assert allowed.tolist() == [L in options for L in "ABCD"]
        source = rows[r["image"]] if len(r["image"]) <= 64 else r  # a pointer row shows the row it names
        assert np.asarray(s.load_image()).tolist() == pixels(base64.b64decode(source["image"]))


def test_vlmevalkit_yesno_with_image_path(bench):
    spec = parse_spec(import_spec(bench.yesno_tsv), "yn")
    assert spec.classes == ["no", "yes"] and spec.task_suffix == YESNO_SUFFIX
    ds = load_dataset(spec)
    rows = {r["index"]: r for r in bench.data["yesno"]}
    for s in ds.samples:
        assert spec.classes[s.label] == rows[s.id]["answer"].lower()
        assert s.image == bench.yesno_tsv.parent / rows[s.id]["image_path"]


def test_tsv_reader_takes_long_base64_images(bench, tmp_path):
    """The plain `tsv` format read a base64 image as a file name: OSError File name too long."""
    rows = [r for r in bench.data["mcq"] if len(r["image"]) > 64]
    path = tmp_path / "plain.tsv"
    path.write_text("id\timage\tquestion\tanswer\n" + "".join(
        f"{r['index']}\t{r['image']}\t{r['question']}\t{['no', 'yes'][i % 2]}\n" for i, r in enumerate(rows)))
    ds = load_dataset(parse_spec({"name": "plain", "format": "tsv", "source": str(path), "classes": ["no", "yes"]},
                                 "plain"))
    assert len(ds) == len(rows) and pixels(base64.b64decode(rows[0]["image"])) in [
        np.asarray(s.load_image()).tolist() for s in ds.samples]


def test_datasets_import_cli_writes_and_registers_a_spec(bench, sn_home):
    from typer.testing import CliRunner

    from sn_store import leaderboard
    from sn_store.cli import app

    db = str(sn_home / "import.duckdb")
    out = CliRunner().invoke(app, ["datasets", "import", str(bench.mcq_tsv), "--db", db])
    assert out.exit_code == 0, out.output
    path = out.stdout.strip().splitlines()[-1]
    assert path == str(sn_home / "datasets" / "mmtest.yaml")
    spec = load_spec_file(path)
    assert spec.source == str(bench.mcq_tsv) and spec.classes == list("ABCD")
    assert leaderboard.query(db, "SELECT name FROM datasets").to_pylist() == [{"name": "mmtest"}]
    before = (sn_home / "datasets" / "mmtest.yaml").read_text()
    again = CliRunner().invoke(app, ["datasets", "import", str(bench.mcq_tsv), "--db", db])
    assert isinstance(again.exception, SnError) and "already registered" in str(again.exception)
    assert (sn_home / "datasets" / "mmtest.yaml").read_text() == before
    (sn_home / "datasets" / "mmtest.yaml").unlink()


def test_hf_format_reads_hub_layout_and_save_to_disk(bench, tmp_path):
    import datasets

    base = {"name": "hf-pope", "format": "hf", "classes": ["no", "yes"], "id_field": "id",
            "params": {"config": "Full", "split": "popular"}}
    from_parquet = load_dataset(parse_spec({**base, "source": str(bench.pope)}, "hf"))
    want = {r["id"]: r for r in bench.data["pope-popular"]}
    assert {s.id for s in from_parquet.samples} == set(want)
    assert all(s.question == want[s.id]["question"] and from_parquet.spec.classes[s.label] == want[s.id]["answer"]
               for s in from_parquet.samples)
    saved = datasets.DatasetDict({"popular": datasets.Dataset.from_list(bench.data["pope-popular"]).cast_column(
        "image", datasets.Image())})
    saved.save_to_disk(str(tmp_path / "saved"))
    from_disk = load_dataset(parse_spec({**base, "source": str(tmp_path / "saved"),
                                         "params": {"split": "popular"}}, "hf"))
    assert [(s.id, s.question, s.label, s.load_image().tobytes()) for s in from_disk.samples] == [
        (s.id, s.question, s.label, s.load_image().tobytes()) for s in from_parquet.samples]
    with pytest.raises(SnError, match=r"no split 'test' \(it has \['popular'\]\)"):
        load_dataset(parse_spec({**base, "source": str(tmp_path / "saved"), "params": {}}, "hf"))


def test_hub_id_offline_fails_in_one_line_naming_the_fix(tmp_path):
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([sys.executable, "-m", "sn_store", "datasets", "add", "pope"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 1
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "lmms-lab/POPE" in out.stderr and "--source" in out.stderr


def test_hub_id_loads_through_datasets(bench, monkeypatch):
    """The hub download is faked (no network here); the rows go through the same conversion as a local copy."""
    import datasets

    seen = {}

    def fake_load(source, name=None, split=None, revision=None):
        seen.update(source=source, name=name, split=split)
        return datasets.Dataset.from_list(bench.data["pope-random"]).cast_column("image", datasets.Image())

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    ds = load_dataset("pope-random", source="lmms-lab-encoder/POPE")
    assert seen == {"source": "lmms-lab-encoder/POPE", "name": "Full", "split": "random"}
    local = load_dataset("pope-random", source=str(bench.pope))
    assert [(s.id, s.label, s.question) for s in ds.samples] == [(s.id, s.label, s.question) for s in local.samples]
    assert ds.content_hash != local.content_hash  # the source is part of the dataset's provenance


def test_registered_copy_with_source_shadows_the_builtin(bench, sn_home):
    from sn_store.datasets import resolve_spec
    from sn_store.registry import add_dataset

    add_dataset("pope-adversarial", str(sn_home / "reg.duckdb"), source=str(bench.pope))
    try:
        assert resolve_spec("pope-adversarial").source == str(bench.pope)
        assert len(load_dataset("pope-adversarial")) == 12
    finally:
        (sn_home / "datasets" / "pope-adversarial.yaml").unlink()


def test_spec_yaml_of_import_is_plain_data(bench):
    assert yaml.safe_load(yaml.safe_dump(import_spec(bench.yesno_tsv))) == json.loads(
        json.dumps(import_spec(bench.yesno_tsv)))
