"""Re-probing: only registered datasets with no finished probe of their content and settings get probed; each run
says what it probed and skipped, and every probe leaves its own Prefect artifacts."""

from __future__ import annotations

import asyncio
import json

import yaml


def write_spec(folder, name, task, seed=0):
    spec = {"name": name, "format": "synthetic", "source": task, "seed": seed, "probe_size": 12, "eval_size": 12,
            "classes": {"exist": ["no", "yes"], "color": ["red", "green", "blue", "yellow"]}[task],
            "params": {"n": 24}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


async def latest_artifact(key):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async with get_client() as client:
        found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return max(found, key=lambda a: a.created) if found else None


def test_reprobe_probes_exactly_the_new_and_the_changed_and_settles(prefect_server, tmp_path, monkeypatch):
    from sn_store.flows.reprobe import reprobe

    from sn_store.leaderboard import query
    from sn_store.registry import add_dataset

    monkeypatch.setenv("SN_HOME", str(tmp_path / "home"))  # a registry of our own
    db = str(tmp_path / "sn.duckdb")
    specs = tmp_path / "specs"
    specs.mkdir()
    add_dataset(write_spec(specs, "reg-a", "exist"), db)
    add_dataset(write_spec(specs, "reg-b", "color"), db)
    assert sorted(reprobe(models=["tiny-llava"], db=db)) == ["tiny-llava/reg-a", "tiny-llava/reg-b"]

    # Two probes of two datasets: two summaries and two top-neuron tables, keyed by model and dataset.
    summaries = {name: asyncio.run(latest_artifact(f"probe-summary-tiny-llava-{name}")) for name in ("reg-a", "reg-b")}
    assert all(summaries.values()) and summaries["reg-a"].id != summaries["reg-b"].id
    assert "`reg-a`" in summaries["reg-a"].data and "`reg-b`" in summaries["reg-b"].data
    assert asyncio.run(latest_artifact("top-neurons-tiny-llava-reg-b")) is not None
    # K = 4: the summary names the best neuron of every class, as the leaderboard ranks them.
    run_b = query(db, "SELECT run_id FROM runs WHERE dataset = 'reg-b'").to_pylist()[0]["run_id"]
    best = query(db, f"SELECT class, site, layer, neuron FROM top_neurons WHERE run_id = '{run_b}' AND rank = 1"
                     " ORDER BY class").to_pylist()
    assert len(best) == 4
    for r in best:
        assert f"{r['class']}: {r['site']} layer {r['layer']} #{r['neuron']}" in summaries["reg-b"].data

    assert reprobe(models=["tiny-llava"], db=db) == []  # nothing new, nothing changed: nothing probed
    report = asyncio.run(latest_artifact("reprobe-summary-tiny-llava")).data
    assert report.count("| skipped | up to date") == 2, report
    suite = json.loads(asyncio.run(latest_artifact("reprobe-suite-tiny-llava")).data)
    assert sorted(row["task"] for row in suite) == ["reg-a", "reg-b"]
    assert all(row["speedup"].endswith(")") for row in suite)  # the median with its spread

    add_dataset(write_spec(specs, "reg-c", "exist", seed=5), db)  # new
    add_dataset(write_spec(specs, "reg-a", "exist", seed=1), db)  # changed content
    assert sorted(reprobe(models=["tiny-llava"], db=db)) == ["tiny-llava/reg-a", "tiny-llava/reg-c"]
    report = asyncio.run(latest_artifact("reprobe-summary-tiny-llava")).data
    assert "| reg-a | probed | content changed" in report and "| reg-c | probed | never probed" in report
    assert reprobe(models=["tiny-llava"], db=db) == []
    add_dataset(write_spec(specs, "reg-a", "exist", seed=0), db)  # back to content probed before: up to date
    assert reprobe(models=["tiny-llava"], db=db) == []

    runs = query(db, "SELECT dataset, count(*) AS n FROM runs GROUP BY dataset ORDER BY dataset").to_pylist()
    assert runs == [{"dataset": "reg-a", "n": 2}, {"dataset": "reg-b", "n": 1}, {"dataset": "reg-c", "n": 1}]
    probes = query(db, "SELECT dataset, count(*) AS n FROM probes GROUP BY dataset ORDER BY dataset").to_pylist()
    assert probes == [{"dataset": "reg-a", "n": 2}, {"dataset": "reg-b", "n": 1}, {"dataset": "reg-c", "n": 1}]
    hashes = query(db, "SELECT name, content_hash FROM datasets ORDER BY name").to_pylist()
    assert [h["name"] for h in hashes] == ["reg-a", "reg-b", "reg-c"]


def test_demo_flow_publishes_its_suite_table(prefect_server, tmp_path):
    """The `demo` flow (what `sn demo` runs) on two small tasks: one `demo-suite-<model>` table artifact whose rows
    are the suite table `sn demo` prints (`sn_store.demo.suite_rows`, read from DuckDB)."""
    from sn_store.flows.demo import demo

    from sn_store.demo import suite_rows

    db = str(tmp_path / "sn.duckdb")
    tasks = [str(write_spec(tmp_path, "demo-a", "exist", seed=2)), str(write_spec(tmp_path, "demo-b", "color"))]
    run_ids = demo(model="tiny-llava", tasks=tasks, db=db)
    suite = json.loads(asyncio.run(latest_artifact("demo-suite-tiny-llava")).data)
    assert sorted(row["task"] for row in suite) == ["demo-a", "demo-b"]
    assert suite == json.loads(json.dumps(suite_rows(db, run_ids)))
