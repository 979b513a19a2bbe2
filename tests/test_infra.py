"""infra: the stack refuses a taken port before starting anything, the work-pool deployments have a pull step that
checks the package is installed on the worker, and `sn serve` without a server to serve refuses in one line."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_stack_refuses_a_taken_port_and_starts_nothing(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "SN_HOME": str(tmp_path), "SN_BIN": str(BIN)}
        res = subprocess.run(["bash", str(ROOT / "infra" / "stack.sh"), "start", "--port", str(port)], env=env,
                             capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert res.stderr.strip() == f"error: port {port} (Prefect server) on 127.0.0.1 is taken; pick another with --port"
    assert not list((tmp_path / "stack").glob("*.pid"))
    stop = subprocess.run(["bash", str(ROOT / "infra" / "stack.sh"), "stop"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert stop.returncode == 0 and stop.stdout == "" and stop.stderr == ""


def test_prefect_yaml_pull_step_checks_the_package_on_the_worker():
    from prefect.deployments.steps.utility import run_shell_script

    spec = yaml.safe_load((ROOT / "infra" / "prefect.yaml").read_text())
    ((name, step),) = spec["pull"][0].items()
    assert name == "prefect.deployments.steps.run_shell_script"
    env = {"PATH": f"{BIN}:{os.environ['PATH']}"}
    out = asyncio.run(run_shell_script(step["script"], env=env, stream_output=False))
    assert "Usage" in out["stdout"]  # `sn` answered: the package is there
    assert all(d["entrypoint"].startswith("sn_store.flows.") for d in spec["deployments"])  # module paths


def test_sn_serve_without_a_server_refuses_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    res = subprocess.run([sys.executable, "-m", "sn_store", "serve"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "PREFECT_API_URL is not set" in res.stderr and "--ephemeral" in res.stderr
