"""Re-probing: only registered datasets that are new, or whose content changed, get probed."""

from __future__ import annotations

import yaml


def write_spec(folder, name, task, seed=0):
    spec = {"name": name, "format": "synthetic", "source": task, "seed": seed, "probe_size": 12, "eval_size": 12,
            "classes": {"exist": ["no", "yes"], "color": ["red", "green", "blue", "yellow"]}[task],
            "params": {"n": 24}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_reprobe_probes_exactly_the_new_and_the_changed(prefect_server, tmp_path, monkeypatch):
    from sn_store.flows.reprobe import reprobe

    from sn_store.registry import add_dataset

    monkeypatch.setenv("SN_HOME", str(tmp_path / "home"))  # a registry of our own
    db = str(tmp_path / "sn.duckdb")
    specs = tmp_path / "specs"
    specs.mkdir()
    add_dataset(write_spec(specs, "reg-a", "exist"), db)
    add_dataset(write_spec(specs, "reg-b", "color"), db)
    assert sorted(reprobe(models=["tiny-llava"], db=db)) == ["tiny-llava/reg-a", "tiny-llava/reg-b"]
    assert reprobe(models=["tiny-llava"], db=db) == []  # nothing new, nothing changed

    add_dataset(write_spec(specs, "reg-c", "exist", seed=5), db)  # new
    add_dataset(write_spec(specs, "reg-a", "exist", seed=1), db)  # changed content
    assert sorted(reprobe(models=["tiny-llava"], db=db)) == ["tiny-llava/reg-a", "tiny-llava/reg-c"]
    from sn_store.leaderboard import query

    runs = query(db, "SELECT dataset, count(*) AS n FROM runs GROUP BY dataset ORDER BY dataset").to_pylist()
    assert runs == [{"dataset": "reg-a", "n": 2}, {"dataset": "reg-b", "n": 1}, {"dataset": "reg-c", "n": 1}]
    hashes = query(db, "SELECT name, content_hash FROM datasets ORDER BY name").to_pylist()
    assert [h["name"] for h in hashes] == ["reg-a", "reg-b", "reg-c"]
