"""Attacks on a store (issue 9, items 2, 3 and 5), each reproduced and refused with a one-line SnError: missing and
corrupt chunks, damaged metadata, a store re-extracted while it is searched, interrupted creation, a dataset whose
files changed, and `--store` pointing at something that is not a store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
import yaml
import zarr
from PIL import Image
from typer.testing import CliRunner

import sn_store.evaluate
from sn_store.datasets import load_dataset, load_spec_file
from sn_store.errors import SnError
from sn_store.extract import extract
from sn_store.search import search
from sn_store.store import StoreReader, verify
from tests.conftest import adapter, small_spec

N, CHUNK = 24, 8


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """One small store (three sample chunks), copied by each test before it is attacked."""
    tmp = tmp_path_factory.mktemp("integrity")
    ds = load_dataset(small_spec(n=N))
    path = extract(adapter("tiny-llava"), ds, store=str(tmp / "s.zarr"), chunk_samples=CHUNK, chunk_neurons=128,
                   layers="0-1", baseline=False, progress=False)
    return path, ds


def copy(made, tmp_path) -> Path:
    dst = tmp_path / "s.zarr"
    shutil.copytree(made[0], dst)
    return dst


def refused(fn, *needles):
    with pytest.raises(SnError) as err:
        fn()
    msg = str(err.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_every_chunk_is_stored_with_a_checksum(made):
    """Even chunks equal to the fill value (model_pred without a baseline: all -1) are written."""
    store = Path(made[0])
    for name in ("activations", "label", "split", "sample_id", "model_pred", "model_logits", "layer", "class"):
        meta = json.loads((store / name / "zarr.json").read_text())
        assert {"name": "crc32c"} in meta["codecs"], name
    assert sorted(p.name for p in (store / "model_pred" / "c").iterdir()) == ["0", "1", "2"]
    assert StoreReader(store).model_pred is None  # -1 everywhere: no baseline


@pytest.mark.parametrize(("array", "chunk"), [("activations", "1/1/0"), ("label", "2"), ("model_pred", "0"),
                                              ("split", "1"), ("neuron_site", "0")])
def test_a_deleted_chunk_is_refused_naming_array_and_chunk(made, tmp_path, array, chunk):
    store = copy(made, tmp_path)
    (store / array / "c" / chunk).unlink()
    coords = tuple(int(c) for c in chunk.split("/"))
    refused(lambda: search(str(store), db=str(tmp_path / "db"), progress=False), f"array `{array}`, chunk {coords}",
            "is missing")


@pytest.mark.parametrize("how", ["flip", "zero"])
@pytest.mark.parametrize(("array", "chunk"), [("activations", "2/0/1"), ("label", "1")])
def test_a_changed_chunk_is_refused_naming_array_and_chunk(made, tmp_path, how, array, chunk):
    store = copy(made, tmp_path)
    path = store / array / "c" / chunk
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0x10
    else:
        data = bytearray(len(data))
    path.write_bytes(bytes(data))
    coords = tuple(int(c) for c in chunk.split("/"))
    db = tmp_path / "sn.duckdb"
    refused(lambda: search(str(store), db=str(db), progress=False), f"array `{array}`, chunk {coords}",
            "checksum")
    assert not db.exists() or duckdb.connect(str(db)).execute("SELECT count(*) FROM runs").fetchone() == (0,)


def test_store_verify_reads_every_chunk(made, tmp_path):
    """`model_logits` is read by neither the search nor the open: `sn store verify` still finds its changed byte."""
    from sn_store import cli

    store = copy(made, tmp_path)
    res = CliRunner().invoke(cli.app, ["store", "verify", str(store)])
    assert res.exit_code == 0 and "chunks read, every one intact" in res.output, res.output
    path = store / "model_logits" / "c" / "1" / "0"
    data = bytearray(path.read_bytes())
    data[3] ^= 0x01
    path.write_bytes(bytes(data))
    StoreReader(store)  # opening does not read it
    refused(lambda: verify(str(store)), "array `model_logits`, chunk (1, 0) cannot be read", "checksum")


def test_a_corrupt_chunk_without_checksum_is_refused_too(made, tmp_path):
    """A store without checksums (older, or another program's): a zeroed blosc chunk fails decompression."""
    store = copy(made, tmp_path)
    meta_path = store / "activations" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["codecs"] = [c for c in meta["codecs"] if c["name"] != "crc32c"]
    meta_path.write_text(json.dumps(meta))
    chunk = store / "activations" / "c" / "0" / "1" / "1"
    chunk.write_bytes(bytes(len(chunk.read_bytes()) - 4))  # the same length as before, every byte zero
    refused(lambda: search(str(store), progress=False), "array `activations`, chunk (0, 1, 1) cannot be read")


@pytest.mark.parametrize(("target", "text", "needle"), [
    ("zarr.json", "", "zarr.json cannot be read"),
    ("zarr.json", "half", "zarr.json cannot be read"),
    ("activations/zarr.json", "half", "activations/zarr.json cannot be read"),
    ("label/zarr.json", "", "label/zarr.json cannot be read"),
])
def test_truncated_or_empty_metadata(made, tmp_path, target, text, needle):
    store = copy(made, tmp_path)
    path = store / target
    path.write_text(path.read_text()[: len(path.read_text()) // 2] if text == "half" else "")
    refused(lambda: StoreReader(store), needle)


@pytest.mark.parametrize(("array", "edit", "needle"), [
    ("activations", {"shape": [N + 8, 2, 768]}, "`label` has shape (24,), expected (32,)"),
    ("label", {"shape": [N - 8]}, "`label` has shape (16,), expected (24,)"),
    ("label", {"data_type": "float32"}, "`label` must hold integers"),
    ("activations", {"data_type": "float32"}, "array `activations`, chunk (0, "),  # the first block read (any)
])
def test_edited_shape_or_dtype(made, tmp_path, array, edit, needle):
    store = copy(made, tmp_path)
    path = store / array / "zarr.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | edit))
    refused(lambda: search(str(store), progress=False), needle)


def test_store_re_extracted_between_fit_and_commit_is_not_recorded(made, tmp_path, monkeypatch):
    """`sn extract --overwrite` lands after the search has fitted and evaluated, before it commits: the run would
    mix two stores, so it is refused and nothing is written."""
    store = copy(made, tmp_path)
    db = tmp_path / "sn.duckdb"
    evaluate_run = sn_store.evaluate.evaluate_run

    def evaluate_then_overwrite(*args, **kwargs):
        rows = evaluate_run(*args, **kwargs)
        extract(adapter("tiny-llava"), made[1], store=str(store), chunk_samples=CHUNK, chunk_neurons=128,
                layers="0-1", baseline=False, overwrite=True, progress=False)
        return rows

    monkeypatch.setattr(sn_store.evaluate, "evaluate_run", evaluate_then_overwrite)
    refused(lambda: search(str(store), db=str(db), progress=False), "changed while it was being read",
            "nothing was recorded")
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM neurons), "
                       "(SELECT count(*) FROM evaluations)").fetchone() == (0, 0, 0)
    con.close()
    monkeypatch.undo()
    assert search(str(store), db=str(db), progress=False)  # the re-extracted store itself is fine


def test_interrupted_creation_is_made_again_and_stale_staging_is_cleaned(made, tmp_path):
    """A group with no attributes (creation killed by an older version) is re-created without --overwrite; a staging
    folder left by a killed creation is removed by the next one."""
    store = tmp_path / "s.zarr"
    zarr.open_group(str(store), mode="w", zarr_format=3).create_array("label", shape=(3,), dtype="int16")
    stale = [tmp_path / ".s.zarr.creating-deadbeef", tmp_path / ".s.zarr.replaced-0123abcd"]
    zarr.open_group(str(stale[0]), mode="w", zarr_format=3)  # a killed creation's half-made group
    stale[1].mkdir()  # killed before anything was written in it
    kept = [tmp_path / ".s.zarr.old-copy", tmp_path / ".s.zarr.creating-mine", tmp_path / ".s.zarr.replaced-0123abce"]
    for p in kept:  # look-alikes creation did not make, or one holding a user's files: never removed
        p.mkdir()
        (p / "thesis.txt").write_text("mine")
    extract(adapter("tiny-llava"), made[1], store=str(store), chunk_samples=CHUNK, chunk_neurons=128,
            layers="0-1", baseline=False, progress=False)
    assert StoreReader(store).attrs.complete and not any(p.exists() for p in stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["s.zarr", *(p.name for p in kept)])
    assert all((p / "thesis.txt").read_text() == "mine" for p in kept)
    a, b = zarr.open_group(str(store))["activations"][:], zarr.open_group(made[0])["activations"][:]
    np.testing.assert_array_equal(a, b)


def image_dataset(root: Path, color: str = "red") -> str:
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = [{"id": f"s{i}", "image": f"images/{i}.png", "question": "Is there a shape?", "answer": ["no", "yes"][i % 2]}
            for i in range(8)]
    for i, r in enumerate(rows):
        Image.new("RGB", (16, 16), color if i == 0 else "white").save(root / r["image"])
    (root / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"name": "files", "format": "jsonl", "source": "d.jsonl", "classes": ["no", "yes"], "probe_size": 4}
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    return str(root / "spec.yaml")


def test_changed_dataset_files_are_named_as_such(tmp_path):
    spec = image_dataset(tmp_path / "data")
    store = str(tmp_path / "s.zarr")
    kw = {"store": store, "layers": "0", "sites": "resid", "baseline": False, "progress": False}
    extract(adapter("tiny-llava"), load_spec_file(spec), **kw)
    before = StoreReader(store).attrs.dataset.content_hash
    image_dataset(tmp_path / "data", color="blue")  # one image changes, nothing else
    after = load_dataset(load_spec_file(spec)).content_hash
    msg = refused(lambda: extract(adapter("tiny-llava"), load_spec_file(spec), **kw),
                  f"the dataset's content changed since this store was made (hash {before} -> {after})",
                  "--overwrite", "overwrite=True")
    assert "other arguments" not in msg
    refused(lambda: extract(adapter("tiny-llava"), load_spec_file(spec), **(kw | {"layers": "1"})),
            "made with other arguments (dataset, layers differ)")


def test_store_path_that_is_not_a_store_is_never_replaced(made, tmp_path):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "thesis.txt").write_text("x")
    file = tmp_path / "notes.txt"
    file.write_text("y")
    group = tmp_path / "theirs.zarr"
    zarr.open_group(str(group), mode="w", zarr_format=3).attrs["note"] = "someone else's"
    for target, needle in ((folder, "not a Zarr group"), (file, "a file"), (group, "not an activation store")):
        for overwrite in (False, True):
            refused(lambda t=target, o=overwrite: extract(adapter("tiny-llava"), made[1], store=str(t), layers="0",
                                                          overwrite=o, progress=False),
                    "exists and is not an activation store", needle)
    assert (folder / "thesis.txt").read_text() == "x" and file.read_text() == "y"
    assert zarr.open_group(str(group)).attrs["note"] == "someone else's"


def test_damaged_store_needs_overwrite(made, tmp_path):
    store = copy(made, tmp_path)
    (store / "zarr.json").write_text("{")
    kw = {"store": str(store), "chunk_samples": CHUNK, "chunk_neurons": 128, "layers": "0-1", "baseline": False,
          "progress": False}
    refused(lambda: extract(adapter("tiny-llava"), made[1], **kw), "zarr.json cannot be read", "--overwrite")
    extract(adapter("tiny-llava"), made[1], overwrite=True, **kw)
    assert StoreReader(store).attrs.complete
