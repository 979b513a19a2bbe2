"""The probe DAG on a real temporary Prefect server: stages, artifacts, resuming after a failure, deployments."""

from __future__ import annotations

import asyncio

import zarr

import sn_store
from sn_store import leaderboard
from sn_store.pipeline import ProbeConfig


def config(tmp_path, **kw):
    kw = {"layers": "0-1", **kw}
    return ProbeConfig(model="tiny-llava", dataset="shapes-exist", probe_size=24, eval_size=24, batch_size=8,
                       ensemble_k=3, db=str(tmp_path / "sn.duckdb"), **kw)


async def artifacts_of(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        return await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))


def test_probe_end_to_end_publishes_three_artifacts(prefect_server, tmp_path):
    from sn_store.flows.probe import probe

    cfg = config(tmp_path)
    state = probe(cfg, return_state=True)
    assert state.is_completed(), state
    result = state.result()
    assert zarr.open_group(result["store"], mode="r").attrs["complete"]
    assert leaderboard.top(cfg.db, result["run_id"], 1).num_rows == 1
    assert (__import__("pathlib").Path(result["artifact"]) / "manifest.json").is_file()
    assert result["speedup"] > 0
    arts = asyncio.run(artifacts_of(state.state_details.flow_run_id))
    assert {"progress", "table", "markdown"} <= {a.type for a in arts}
    (progress,) = [a for a in arts if a.type == "progress"]
    n = cfg.probe_size + cfg.eval_size
    assert progress.data == 100.0 and progress.description.endswith(f"{n} of {n} samples"), progress.description
    assert progress.key == "extraction-tiny-llava-shapes-exist"  # keyed by model and dataset, like the others
    methods = {r["method"] for r in leaderboard.run_evaluations(cfg.db, result["run_id"])}
    assert {"model", "sn", "sn_ensemble", "sav", "early_exit"} <= methods


def test_failure_in_search_then_rerun_does_not_re_extract(prefect_server, tmp_path, monkeypatch):
    import sys

    from sn_store.flows.probe import probe

    search_module = sys.modules["sn_store.search"]
    cfg = config(tmp_path, layers="1")  # another store than the test above
    real = search_module.fit_store

    def broken(*a, **k):
        raise RuntimeError("injected failure in search")

    monkeypatch.setattr(search_module, "fit_store", broken)
    assert probe(cfg, return_state=True).is_failed()
    from sn_store.pipeline import dataset_for

    # The same extraction again names the same store (one naming rule) and, complete, returns at once.
    store = sn_store.extract(cfg.model, dataset_for(cfg), sites=cfg.sites, layers=cfg.layers, progress=False)
    stamp = (__import__("pathlib").Path(store) / "zarr.json").stat().st_mtime_ns
    monkeypatch.setattr(search_module, "fit_store", real)
    state = probe(cfg, return_state=True)
    assert state.is_completed()
    assert (__import__("pathlib").Path(store) / "zarr.json").stat().st_mtime_ns == stamp  # not re-extracted
    # A third run reuses the finished search instead of repeating it.
    runs_before = leaderboard.query(cfg.db, "SELECT count(*) AS n FROM runs").to_pylist()[0]["n"]
    assert probe(cfg, return_state=True).result()["run_id"] == state.result()["run_id"]
    assert leaderboard.query(cfg.db, "SELECT count(*) AS n FROM runs").to_pylist()[0]["n"] == runs_before


def test_deployments_register_with_schedules_and_parameter_schemas(prefect_server):
    from prefect.client.orchestration import get_client
    from sn_store.flows.serve import deployments

    built = deployments(cron="*/30 * * * *")  # outside the event loop: to_deployment is sync-compatible

    async def register():
        ids = {}
        for d in built:
            ids[d.name] = await d.apply()
        async with get_client() as client:
            return {name: await client.read_deployment(i) for name, i in ids.items()}

    got = asyncio.run(register())
    assert set(got) == {"probe", "extract", "search", "export", "report", "reprobe"}
    assert [s.schedule.cron for s in got["reprobe"].schedules] == ["*/30 * * * *"]
    assert not got["probe"].schedules
    schema = got["probe"].parameter_openapi_schema
    assert "config" in schema["properties"]
    probe_config = schema["definitions"]["ProbeConfig"]["properties"]
    assert {"model", "dataset", "sites", "layers", "batch_size", "probe_size", "eval_size", "mode", "ensemble_k",
            "dask_address"} <= set(probe_config)
    assert probe_config["mode"].get("enum") == ["exact", "grid"]


def test_sn_extract_then_sn_probe_with_the_same_settings_extracts_once(prefect_server, tmp_path, sn_home):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import typer
    import yaml

    from sn_store.cli import app

    spec = tmp_path / "tiny-task.yaml"
    spec.write_text(yaml.safe_dump({"name": "tiny-task", "format": "synthetic", "source": "exist", "seed": 3,
                                    "classes": ["no", "yes"], "probe_size": 12, "eval_size": 12, "params": {"n": 24}}))
    res = subprocess.run([sys.executable, "-m", "sn_store", "extract", "--model", "tiny-llava", "--dataset", str(spec),
                          "--layers", "0"], capture_output=True, text=True, env=os.environ, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    (store,) = (Path(sn_home) / "stores").glob("tiny-llava__tiny-task-*.zarr")
    stamp = (store / "zarr.json").stat().st_mtime_ns
    db = str(tmp_path / "sn.duckdb")
    # The real `sn probe` command line, in this process (as in tests/datasets/test_probe_benchmarks.py).
    typer.main.get_command(app).main(["probe", "--model", "tiny-llava", "--dataset", str(spec), "--layers", "0",
                                      "--batch-size", "8", "--ensemble-k", "3", "--db", db], standalone_mode=False)
    (run,) = leaderboard.query(db, "SELECT store FROM runs").to_pylist()
    assert run["store"] == str(store)  # the probe searched the store `sn extract` wrote
    assert (store / "zarr.json").stat().st_mtime_ns == stamp  # not extracted a second time
    assert [p.name for p in (Path(sn_home) / "stores").glob("tiny-llava__tiny-task-*.zarr")] == [store.name]
