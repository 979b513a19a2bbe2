"""End to end as a user runs it: `prefect server start` and `sn serve` as processes on loopback, a flow run of the
`probe` deployment created through the API (what the UI's Run button does), the leaderboard read from DuckDB."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest
import zarr

from tests.conftest import free_port

pytestmark = pytest.mark.slow


def wait_for(check, timeout: float, what: str, procs=()):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for p in procs:
            assert p.poll() is None, f"{p.args} exited with {p.returncode} while waiting for {what}"
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(1)
    raise TimeoutError(f"timed out waiting for {what}")


def stop(procs):
    for p in procs:  # each leads its own session: signal its whole group (flow-run subprocesses included)
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_probe_deployment_run_from_the_api(tmp_path):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": api,
           "PREFECT_UI_API_URL": api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "SN_HOME": str(tmp_path / "sn"),
           "PREFECT_LOGGING_LEVEL": "WARNING"}
    bin_dir = Path(sys.executable).parent
    logs = [open(tmp_path / name, "w") for name in ("server.log", "serve.log")]
    procs = [subprocess.Popen([str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                               str(port)], env=env, stdout=logs[0], stderr=subprocess.STDOUT, start_new_session=True)]
    try:
        wait_for(lambda: urllib.request.urlopen(f"{api}/health", timeout=2).status == 200, 180, "the server", procs)
        procs.append(subprocess.Popen([sys.executable, "-m", "sn_store", "serve"], env=env, stdout=logs[1],
                                      stderr=subprocess.STDOUT, start_new_session=True))
        run = asyncio.run(run_probe_deployment(api, procs))
        assert run.state.is_completed(), (run.state, (tmp_path / "serve.log").read_text()[-3000:])
        con = duckdb.connect(str(tmp_path / "sn" / "sn.duckdb"), read_only=True)
        n = con.execute("SELECT count(*) FROM neurons JOIN runs USING (run_id) WHERE dataset = 'shapes-exist'")
        (store,) = (tmp_path / "sn" / "stores").glob("*.zarr")
        width = zarr.open_group(str(store), mode="r")["activations"].shape[2]
        assert n.fetchall()[0][0] == width  # every neuron of layer 0: resid + mlp + attn
        con.close()
    finally:
        stop(procs)
        for log in logs:
            log.close()
    assert all(p.returncode is not None for p in procs)


async def run_probe_deployment(api, procs):
    from prefect.client.orchestration import PrefectClient

    # An explicit client for this server: other tests' harness settings may still be active in this process.
    async with PrefectClient(api) as client:
        deadline = time.time() + 120
        while True:  # `sn serve` registers the deployments
            for p in procs:
                assert p.poll() is None, f"{p.args} exited with {p.returncode}"
            try:
                deployment = await client.read_deployment_by_name("probe/probe")
                break
            except Exception:
                if time.time() > deadline:
                    raise
                await asyncio.sleep(1)
        params = {"config": {"probe_size": 16, "eval_size": 16, "layers": "0", "batch_size": 8, "ensemble_k": 3}}
        run = await client.create_flow_run_from_deployment(deployment.id, parameters=params)
        deadline = time.time() + 400
        while not (run := await client.read_flow_run(run.id)).state.is_final():
            assert time.time() < deadline, f"flow run still {run.state.name}"
            await asyncio.sleep(2)
        return run
