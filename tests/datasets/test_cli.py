"""The `sn datasets` commands on the benchmarks: `list` shows every built-in benchmark, `add NAME --source PATH`
registers a built-in with a local copy of its data (which then shadows the built-in)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sn_store import leaderboard
from sn_store.cli import app
from sn_store.datasets import builtin_specs, load_dataset, load_spec_file, resolve_spec

BENCHMARKS = ["aokvqa", "clevr-count", "clevr-yesno", "instaorder-depth", "instaorder-occlusion", "pope",
              "pope-adversarial", "pope-popular", "pope-random", "scienceqa-img", "vizwiz"]


def test_datasets_list_shows_the_benchmarks():
    out = CliRunner().invoke(app, ["datasets", "list"])
    assert out.exit_code == 0, out.output
    rows = {line.split("│")[1].strip(): line for line in out.output.splitlines() if line.count("│") > 2}
    assert set(BENCHMARKS) <= set(rows) and set(rows) >= set(builtin_specs())
    assert "lmms-lab/POPE" in rows["pope"] and "A, B, C, D" in rows["aokvqa"] and "built-in" in rows["vizwiz"]


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A workspace of its own: the registered copy must not shadow the built-in in the session's other tests."""
    monkeypatch.setenv("SN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_datasets_add_a_builtin_with_source(bench, workspace):
    db = str(workspace / "sn.duckdb")
    out = CliRunner().invoke(app, ["datasets", "add", "pope-popular", "--source", str(bench.pope), "--db", db])
    assert out.exit_code == 0, out.output
    want = load_dataset("pope-popular", source=str(bench.pope)).content_hash
    assert f"registered pope-popular (content hash {want})" in out.output
    copy = workspace / "datasets" / "pope-popular.yaml"
    assert load_spec_file(copy).source == str(bench.pope)
    assert resolve_spec("pope-popular").source == str(bench.pope)  # the registered copy shadows the built-in
    assert leaderboard.query(db, "SELECT name, content_hash FROM datasets").to_pylist() == [
        {"name": "pope-popular", "content_hash": want}]


def test_datasets_add_with_a_missing_source_registers_nothing(workspace, tmp_path):
    out = CliRunner().invoke(app, ["datasets", "add", "pope", "--source", str(tmp_path / "nowhere" / "POPE"),
                                   "--db", str(workspace / "sn.duckdb")])
    assert out.exit_code != 0 and "nowhere/POPE" in str(out.exception)
    assert not (workspace / "datasets" / "pope.yaml").exists()
