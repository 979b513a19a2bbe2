"""The dataset registry: built-in names are not taken by other specs, unknown names list what is known, and an
`sn datasets add` cut short between its two writes is repaired by running it again."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from sn_store.datasets import resolve_spec
from sn_store.errors import SnError
from sn_store.registry import add_dataset, registered_specs


def spec_file(folder, name, seed=0):
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "format": "synthetic", "source": "exist", "seed": seed,
                                    "classes": ["no", "yes"], "probe_size": 4, "eval_size": 4, "params": {"n": 8}}))
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_a_spec_file_may_not_take_a_builtin_name(home, tmp_path):
    with pytest.raises(SnError, match="built-in spec's: give your spec another `name:`"):
        add_dataset(spec_file(tmp_path, "shapes-exist"), str(tmp_path / "sn.duckdb"))
    assert registered_specs() == {}


def test_unknown_name_lists_registered_names_too(home, tmp_path):
    add_dataset(spec_file(tmp_path, "my-task"), str(tmp_path / "sn.duckdb"))
    with pytest.raises(SnError, match=r"registered: \['my-task'\]") as err:
        resolve_spec("my-tsak")
    assert "shapes-exist" in str(err.value)


def test_add_cut_short_between_its_writes_is_repaired_by_running_it_again(home, tmp_path, monkeypatch):
    from sn_store.leaderboard import query

    db = str(tmp_path / "sn.duckdb")
    add_dataset(spec_file(tmp_path, "my-task", seed=0), db)
    real = pathlib.Path.replace

    def killed(self, target):
        raise KeyboardInterrupt  # as if killed right before the copy lands

    monkeypatch.setattr(pathlib.Path, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        add_dataset(spec_file(tmp_path, "my-task", seed=3), db)
    assert resolve_spec("my-task").seed == 0  # the registered copy is still the old one, whole
    monkeypatch.setattr(pathlib.Path, "replace", real)
    _, content_hash = add_dataset(spec_file(tmp_path, "my-task", seed=3), db)
    assert resolve_spec("my-task").seed == 3
    (row,) = query(db, "SELECT spec, content_hash FROM datasets WHERE name = 'my-task'").to_pylist()
    assert row["content_hash"] == content_hash and yaml.safe_load(row["spec"])["seed"] == 3
    assert (home / "datasets" / "my-task.yaml").read_text() == row["spec"]
