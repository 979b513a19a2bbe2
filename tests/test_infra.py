"""infra: a real stack (Prefect server, Dask scheduler and worker, `sn serve`) listens on 127.0.0.1 only, dashboards
included, and stops in reverse start order with nothing left and no traceback; the stack refuses a taken port before
starting anything; compose.yaml names every Dask dashboard's address; the work-pool deployments have a pull step that
checks the package is installed on the worker, and `sn serve` without a server to serve refuses in one line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil  # a dependency of dask.distributed: always there
import pytest
import yaml

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STACK = ROOT / "infra" / "stack.sh"


def _stack_env(tmp_path) -> dict[str, str]:
    """The stack's own SN_HOME, Prefect home (a fresh database, not ~/.prefect) and Dask scratch space."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "SN_HOME": str(tmp_path), "SN_BIN": str(BIN), "PREFECT_HOME": str(tmp_path / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DASK_TEMPORARY_DIRECTORY": str(tmp_path / "dask")}


def _stack(env, *args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(STACK), *args], env=env, capture_output=True, text=True, timeout=timeout)


def _gone(proc: psutil.Process) -> bool:
    """Exited: not running, or a zombie (exited; only its parent's reaping is left)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _tree(pid: int) -> list[psutil.Process]:
    try:
        leader = psutil.Process(pid)
        return [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _catches_sigterm(pid: int) -> bool:
    """The process has a handler for SIGTERM (Linux: SigCgt in /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # gone
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) >> (15 - 1) & 1)


def _listening(procs: list[psutil.Process]) -> set[tuple[str, int]]:
    out = set()
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            out |= {(c.laddr.ip, c.laddr.port) for c in proc.net_connections(kind="inet")
                    if c.status == psutil.CONN_LISTEN}
    return out


@pytest.fixture
def stack_home(tmp_path):
    """SN_HOME for one stack; whatever it recorded is stopped afterwards, even when the test failed."""
    yield tmp_path
    if list((tmp_path / "stack").glob("*.pid")):
        env = _stack_env(tmp_path)
        _stack(env, "stop", timeout=120)
        for pidfile in (tmp_path / "stack").glob("*.pid"):  # stop itself failed: only the PIDs this test started
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.killpg(int(pidfile.read_text()), 9)


def test_stack_listens_on_loopback_only_and_stops_in_reverse_order(stack_home):
    env = _stack_env(stack_home)
    state = stack_home / "stack"
    port, dask_port, dashboard_port = free_port(), free_port(), free_port()
    assert len({port, dask_port, dashboard_port}) == 3
    res = _stack(env, "start", "--port", str(port), "--dask-workers", "1", "--dask-port", str(dask_port),
                 "--dask-dashboard-port", str(dashboard_port), timeout=240)
    assert res.returncode == 0, res.stdout + res.stderr
    started = [line.split()[1] for line in res.stdout.splitlines() if line.startswith("started ")]
    assert started == ["prefect-server", "dask-scheduler", "dask-worker-1", "sn-serve"]
    assert (state / "order").read_text().split() == started
    pids = {name: int((state / f"{name}.pid").read_text()) for name in started}

    # Ready: the worker has registered with the scheduler (by then it has opened every listener it will have, its
    # dashboard included), and `sn serve` has registered its deployments and started serving them (its runner then
    # catches SIGTERM for a graceful shutdown; before that, SIGTERM simply ends it).
    ready = {"sn-serve": "Your deployments are being served", "dask-worker-1": "Registered to:"}
    deadline = time.monotonic() + 120
    while not (all(text in (state / f"{name}.log").read_text() for name, text in ready.items())
               and _catches_sigterm(pids["sn-serve"])):
        dead = [name for name, pid in pids.items() if all(_gone(proc) for proc in _tree(pid))]
        assert not dead, "\n".join(f"{n}: {(state / f'{n}.log').read_text()[-2000:]}" for n in dead)
        assert time.monotonic() < deadline, "the stack did not come up in 120 s"
        time.sleep(0.5)

    trees = {name: _tree(pid) for name, pid in pids.items()}
    listening = {name: _listening(procs) for name, procs in trees.items()}
    print("listening:", listening)
    everything = set().union(*listening.values())
    assert {p for ip, p in everything} >= {port, dask_port, dashboard_port}
    assert ("127.0.0.1", dashboard_port) in listening["dask-scheduler"]
    assert len(listening["dask-worker-1"]) >= 3  # nanny, worker, and the worker's dashboard
    assert {ip for ip, p in everything} == {"127.0.0.1"}, listening  # nothing on 0.0.0.0, ::, or another address

    t0 = time.monotonic()
    stop = _stack(env, "stop", timeout=240)
    took = time.monotonic() - t0
    print(f"stack.sh stop took {took:.1f} s:\n{stop.stdout}", end="")
    assert stop.returncode == 0 and stop.stderr == "", stop.stderr
    stopped = [line.split()[1] for line in stop.stdout.splitlines() if line.startswith("stopped ")]
    assert stopped == started[::-1]  # sn serve, workers, scheduler, server
    left = [f"{proc.pid} {proc.name()} ({name})" for name, procs in trees.items() for proc in procs if not _gone(proc)]
    assert not left, left
    assert not list(state.glob("*.pid")) and not (state / "order").exists()
    assert "Traceback" not in stop.stdout
    for name in started:
        log = (state / f"{name}.log").read_text()
        assert "Traceback" not in log, f"{name}.log:\n{log[-3000:]}"
    assert _stack(env, "status").stdout == f"no stack recorded in {state}\n"


@pytest.mark.parametrize("which", ["--dask-port", "--dask-dashboard-port"])
def test_stack_refuses_a_taken_dask_port_and_starts_nothing(tmp_path, which):
    env = _stack_env(tmp_path)
    ports = {"--port": free_port(), "--dask-port": free_port(), "--dask-dashboard-port": free_port()}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports[which]))
        taken.listen()
        args = [a for option, p in ports.items() for a in (option, str(p))]
        res = _stack(env, "start", *args, "--dask-workers", "1")
    what = {"--dask-port": "Dask scheduler", "--dask-dashboard-port": "Dask dashboard"}[which]
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr == f"error: port {ports[which]} ({what}) on 127.0.0.1 is taken; pick another with {which}\n"
    assert not list((tmp_path / "stack").glob("*.pid")) and not (tmp_path / "stack" / "order").exists()
    assert not (tmp_path / "stack" / "port").exists()


def test_compose_names_every_dask_dashboard_address():
    """Dask's dashboards bind where --dashboard-address says, not where --host does: each Dask command names its
    dashboard's address (or turns it off), on loopback, or on the container's network only when the service publishes
    that port on the host's loopback alone. (No Docker engine here: the file is checked, not run.)"""
    services = yaml.safe_load((ROOT / "infra" / "compose.yaml").read_text())["services"]
    dask = {name: svc for name, svc in services.items() if str(svc.get("command", "")).split()[:1] == ["dask"]}
    assert set(dask) == {"dask-scheduler", "dask-worker"}
    for name, svc in dask.items():
        argv = svc["command"].split()
        if "--no-dashboard" in argv:
            continue
        assert "--dashboard-address" in argv, f"{name}: no --dashboard-address"
        host, _, dport = argv[argv.index("--dashboard-address") + 1].rpartition(":")
        if host in ("127.0.0.1", "localhost"):
            continue
        published = [str(p) for p in svc.get("ports", []) if str(p).rsplit(":", 1)[-1] == dport]
        assert published and all(p.startswith("127.0.0.1:") for p in published), \
            f"{name}: dashboard on {host}:{dport}, not published on the host's loopback only: {svc.get('ports')}"


def test_stack_refuses_a_taken_port_and_starts_nothing(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "SN_HOME": str(tmp_path), "SN_BIN": str(BIN)}
        res = _stack(env, "start", "--port", str(port))
    assert res.returncode == 1
    assert res.stderr.strip() == f"error: port {port} (Prefect server) on 127.0.0.1 is taken; pick another with --port"
    assert not list((tmp_path / "stack").glob("*.pid"))
    stop = _stack(env, "stop")
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
