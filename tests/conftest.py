"""Shared fixtures: one temporary workspace per session (tiny models are built once into it), loaded adapters."""

from __future__ import annotations

import functools
import os

import pytest

FAMILIES = {"llava": "tiny-llava", "qwen2_vl": "tiny-qwen2-vl", "idefics3": "tiny-idefics3"}


@pytest.fixture(scope="session", autouse=True)
def sn_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("sn-home")
    old = os.environ.get("SN_HOME")
    os.environ["SN_HOME"] = str(home)  # subprocesses inherit it
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    yield home
    if old is None:
        os.environ.pop("SN_HOME", None)
    else:
        os.environ["SN_HOME"] = old


@functools.cache
def adapter(name: str):
    from sn_store.models import load_model

    return load_model(name, device="cpu")


@pytest.fixture(params=list(FAMILIES.values()))
def tiny_name(request):
    return request.param


def small_spec(name: str = "shapes-exist", n: int = 40, **update):
    """A built-in synthetic spec shrunk to `n` samples, half probe, half eval."""
    from sn_store.datasets import resolve_spec

    spec = resolve_spec(name)
    fields = {"params": {**spec.params, "n": n}, "probe_size": n // 2, "eval_size": n - n // 2, **update}
    return spec.model_copy(update=fields)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def prefect_server():
    """One real temporary Prefect server (Prefect's own test harness) for every flow test (tests/flows and the
    benchmark datasets' `sn probe`), started once per session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def sn_tiny_store(tmp_path_factory):
    """One small store of the shipped trained model (sites resid, mlp, attn; every layer) on shapes-exist."""
    from sn_store import extract
    from sn_store.datasets import load_dataset

    path = tmp_path_factory.mktemp("sn-tiny") / "shapes-exist.zarr"
    return extract(adapter("sn-tiny-llava"), load_dataset(small_spec("shapes-exist", n=64)), store=str(path),
                   progress=False)


@pytest.fixture(scope="session")
def sn_tiny_run(sn_tiny_store, tmp_path_factory):
    """(database path, run id) of an exact search of `sn_tiny_store` (with SAV)."""
    from sn_store import search

    db = str(tmp_path_factory.mktemp("sn-tiny-db") / "sn.duckdb")
    return db, search(sn_tiny_store, db=db, progress=False)
