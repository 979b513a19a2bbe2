"""A run killed with SIGKILL midway resumes and ends equal, value for value, to an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

ROOT = Path(__file__).resolve().parents[1]
N, CHUNK = 480, 32


def spec_file(tmp_path: Path) -> Path:
    spec = {"name": "resume-test", "format": "synthetic", "source": "exist", "classes": ["no", "yes"],
            "probe_size": N // 2, "eval_size": N // 2, "params": {"n": N}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def extract_cmd(spec: Path, store: Path) -> list[str]:
    code = (f"import sn_store; sn_store.extract('tiny-llava', {str(spec)!r}, store={str(store)!r}, "
            f"batch_size=4, chunk_samples={CHUNK}, progress=False)")
    return [sys.executable, "-c", code]


def n_done(store: Path) -> int:
    try:
        return json.loads((store / "zarr.json").read_text())["attributes"].get("n_done", 0)
    except (OSError, ValueError, KeyError):
        return 0


def test_sigkill_midway_then_resume_equals_uninterrupted(tmp_path):
    spec = spec_file(tmp_path)
    killed, clean = tmp_path / "killed.zarr", tmp_path / "clean.zarr"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(extract_cmd(spec, killed), env=env, cwd=ROOT)
    deadline = time.time() + 300
    while n_done(killed) < 2 * CHUNK and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = n_done(killed)
    assert 0 < at_kill < N, f"the kill should land midway, n_done={at_kill}"
    first_chunk = killed / "activations" / "c" / "0" / "0" / "0"
    before = first_chunk.stat().st_mtime_ns

    subprocess.run(extract_cmd(spec, killed), env=env, cwd=ROOT, check=True)
    subprocess.run(extract_cmd(spec, clean), env=env, cwd=ROOT, check=True)
    assert first_chunk.stat().st_mtime_ns == before, "the resumed run rewrote a chunk it had finished"

    a = xr.open_zarr(killed, consolidated=False).load()
    b = xr.open_zarr(clean, consolidated=False).load()
    assert a.attrs["complete"] and b.attrs["complete"] and a.attrs["n_done"] == N
    for name in b.variables:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    assert len(set(a["sample_id"].values.astype(object))) == N  # none missing, none duplicated
