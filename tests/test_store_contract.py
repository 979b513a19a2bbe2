"""The store contract as code: a store written by another program with plain zarr (only the required attributes and
arrays) is searched like one of ours, with its missing provenance NULL in DuckDB; missing or wrong attributes are
one-line errors naming the key; `sn store schema` prints the model's JSON schema, and the README shows the same."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest
import zarr

from sn_store.errors import SnError
from sn_store.search import search
from sn_store.store import StoreAttrs, StoreReader

ROOT = Path(__file__).resolve().parents[1]
N, LAYERS, WIDTH, PLANTED = 40, 2, 8, (1, 5)  # the planted neuron: layer position 1, neuron 5


def third_party_store(path: Path, **attrs) -> tuple[str, np.ndarray]:
    """What another program following DESIGN.md writes: zarr defaults (no checksums), required parts only."""
    rng = np.random.default_rng(0)
    y = np.arange(N) % 2
    acts = rng.standard_normal((N, LAYERS, WIDTH)).astype(np.float32)
    acts[:, PLANTED[0], PLANTED[1]] += 3 * (2 * y - 1)  # separates the classes perfectly
    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    for name, data, dims, chunks in (
        ("activations", acts, ("sample", "layer", "neuron"), (16, 1, WIDTH)),
        ("label", y.astype(np.int8), ("sample",), (16,)),
        ("split", np.array(["probe"] * (N // 2) + ["eval"] * (N // 2), dtype=object), ("sample",), (16,)),
        ("layer", np.array([3, 7], dtype=np.int64), ("layer",), None),
        ("neuron_site", np.array(["resid"] * WIDTH, dtype=object), ("neuron",), None),
        ("neuron_index", np.arange(WIDTH, dtype=np.int32), ("neuron",), None),
    ):
        arr = g.create_array(name, shape=data.shape, dtype=str if data.dtype == object else data.dtype,
                             chunks=chunks or data.shape, dimension_names=dims)
        arr[...] = data
    g.attrs.update({"classes": ["no", "yes"], "sites": ["resid"], "complete": True, **attrs})
    return str(path), y


def test_sn_search_on_a_minimal_third_party_store(tmp_path, monkeypatch):
    """Through the real `sn` command, from another directory with a relative --store: runs.store is absolute."""
    third_party_store(tmp_path / "other.zarr")
    db = tmp_path / "sn.duckdb"
    res = subprocess.run([sys.executable, "-m", "sn_store", "search", "--store", "other.zarr", "--db", str(db),
                          "--ensemble-k", "1"], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    run_id = res.stdout.strip()
    con = duckdb.connect(str(db), read_only=True)
    row = con.execute("SELECT store, model, dataset, dataset_hash, model_config_hash, store_fingerprint, n_probe, "
                      "classes FROM runs WHERE run_id = ?", [run_id]).fetchone()
    best = con.execute("SELECT site, layer, neuron, probe_acc, eval_acc FROM neurons WHERE run_id = ? "
                       "ORDER BY probe_acc DESC, eval_acc DESC LIMIT 1", [run_id]).fetchone()
    con.close()
    assert row == (str((tmp_path / "other.zarr").resolve()), None, None, None, None, None, N // 2, ["no", "yes"])
    assert best == ("resid", 7, PLANTED[1], 1.0, 1.0)  # layer from the store's coordinate, not its position


def test_partial_provenance_is_kept_and_the_rest_is_null(tmp_path):
    """The store of the issue: `dataset` with `name` and `hash` (not content_hash), `model` without config_hash."""
    store, _ = third_party_store(tmp_path / "s.zarr", dataset={"name": "theirs", "hash": "abc"},
                                 model={"id": "their-model"})
    db = str(tmp_path / "sn.duckdb")
    run_id = search(store, db=db, ensemble_k=1, progress=False)
    con = duckdb.connect(db, read_only=True)
    row = con.execute("SELECT model, dataset, dataset_hash, model_config_hash FROM runs WHERE run_id = ?",
                      [run_id]).fetchone()
    con.close()
    assert row == ("their-model", "theirs", None, None)


@pytest.mark.parametrize(("edit", "message"), [
    ({"classes": None}, "required attribute `classes` is missing"),
    ({"sites": None}, "required attribute `sites` is missing"),
    ({"complete": None}, "required attribute `complete` is missing"),
    ({"classes": "no,yes"}, "attribute `classes`: Input should be a valid list"),
    ({"classes": ["yes"]}, "attribute `classes`"),
    ({"complete": "true"}, "attribute `complete`: Input should be a valid boolean"),
    ({"model": {"id": 3}}, "attribute `model.id`"),
    ({"sites": ["mlp"]}, "`neuron_site` names ['resid'], not in the `sites` attribute"),
])
def test_missing_or_wrong_attribute_is_one_line_naming_the_key(tmp_path, edit, message):
    store, _ = third_party_store(tmp_path / "s.zarr")
    g = zarr.open_group(store, mode="r+")
    for key, value in edit.items():
        if value is None:
            del g.attrs[key]
        else:
            g.attrs[key] = value
    with pytest.raises(SnError) as err:
        StoreReader(store)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_required_array_and_bad_labels(tmp_path):
    store, _ = third_party_store(tmp_path / "s.zarr")
    g = zarr.open_group(store, mode="r+")
    g["label"][0] = 2
    with pytest.raises(SnError, match=r"`label` of sample 0 is 2, not an index into classes"):
        StoreReader(store)
    del g["split"]
    with pytest.raises(SnError, match="required array `split` is missing"):
        StoreReader(store)


def test_store_schema_command_and_readme_show_the_model():
    res = subprocess.run([sys.executable, "-m", "sn_store", "store", "schema"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    printed = json.loads(res.stdout)
    assert printed == StoreAttrs.model_json_schema()
    assert printed["required"] == ["classes", "sites", "complete"]
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- store-schema -->\n```json\n(.*?)```", readme, re.S)
    assert block, "README lacks the store schema block"
    assert json.loads(block[1]) == printed, "README's store schema is stale: paste `sn store schema`"


OLD_STORES = sorted((ROOT / "tests" / "data" / "stores").glob("*.zarr"))


def best_probe_accuracy(acts: np.ndarray, y: np.ndarray) -> float:
    """Brute force: every neuron, every cut between its sorted values (and below all), both polarities."""
    best = 0.0
    for a in acts.reshape(len(acts), -1).T.astype(np.float64):
        cuts = np.concatenate([[-np.inf], np.unique(a)])
        pred = a[None, :] > cuts[:, None]
        acc = (pred == y[None, :].astype(bool)).mean(1)
        best = max(best, acc.max(), (1 - acc).max())
    return float(best)


@pytest.mark.parametrize("old", OLD_STORES, ids=[p.name for p in OLD_STORES])
def test_stores_written_by_earlier_versions_are_searched_and_exported(old, tmp_path):
    """A store written by an earlier sn_store (tests/data/stores, made by that version's `extract`: no checksums,
    no store_id, no attn_heads) is opened, verified, searched and exported like a new one."""
    import shutil

    from sn_store.export import export

    assert old.name.startswith("v0.1.0"), "add the version's row to the README's stores paragraph"
    store = tmp_path / old.name
    shutil.copytree(old, store)
    assert "store_id" not in zarr.open_group(str(store), mode="r").attrs  # really the older layout
    reader = StoreReader(str(store))
    probe = reader.split == "probe"
    acts = np.asarray(zarr.open_group(str(store), mode="r")["activations"][:])[probe]
    db = str(tmp_path / "sn.duckdb")
    run = search(str(store), db=db, progress=False)
    con = duckdb.connect(db, read_only=True)
    got = con.execute("SELECT max(probe_acc) FROM neurons WHERE run_id = ?", [run]).fetchone()[0]
    con.close()
    assert got == pytest.approx(best_probe_accuracy(acts, reader.labels[probe]))
    path = export(run, tmp_path / "artifact", db=db)  # verify: the artifact equals the old store on eval
    assert (path / "manifest.json").is_file()


def test_a_run_recorded_with_a_relative_store_path_is_named_from_another_folder(tmp_path, monkeypatch):
    """sn_store 0.1.0 recorded `runs.store` as given; such a row read from another folder is a one-line error saying
    so, and from the folder the search ran in it still works."""
    from sn_store import leaderboard
    from sn_store.export import export

    third_party_store(tmp_path / "rel.zarr")
    db = str(tmp_path / "sn.duckdb")
    run = search(str(tmp_path / "rel.zarr"), db=db, progress=False)
    con = duckdb.connect(db)
    con.execute("UPDATE runs SET store = 'rel.zarr' WHERE run_id = ?", [run])  # as the older version wrote it
    con.close()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(SnError, match=r"recorded as the relative path 'rel.zarr'.*not there from .*elsewhere") as e:
        export(run, tmp_path / "art", db=db)
    assert "\n" not in str(e.value) and not (tmp_path / "art").exists()
    monkeypatch.chdir(tmp_path)
    assert leaderboard.run_store(leaderboard.run_row(db, run)) == "rel.zarr"
