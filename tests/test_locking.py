"""One writer per store: a second extraction of a store being written refuses (lock_wait_s=0) or waits, then finds
it complete instead of repeating the work."""

from __future__ import annotations

import threading

import pytest
import zarr

from sn_store.datasets import load_dataset
from sn_store.errors import SnError
from sn_store.extract import extract
from sn_store.locking import lock_path, writer_lock
from tests.conftest import adapter, small_spec


def test_a_store_being_written_is_refused_or_waited_for(tmp_path, capfd):
    store = str(tmp_path / "s.zarr")
    ds = load_dataset(small_spec(n=8))
    kw = {"store": store, "layers": "0", "sites": "resid", "progress": False}
    with writer_lock(store):  # as another process writing it (flock: a second open file conflicts)
        with pytest.raises(SnError, match=r"store .*s\.zarr is being written by another process \(pid \d+\)"):
            extract(adapter("tiny-llava"), ds, lock_wait_s=0, **kw)
        assert not (tmp_path / "s.zarr").exists()  # nothing touched
        done = []
        waiting = threading.Thread(target=lambda: done.append(extract(adapter("tiny-llava"), ds, **kw)))
        waiting.start()
        waiting.join(timeout=1.0)
        assert waiting.is_alive() and not done  # still waiting for the lock
    waiting.join(timeout=120)
    assert done == [store] and zarr.open_group(store, mode="r").attrs["complete"]
    assert "is being written by another process (pid" in capfd.readouterr().err
    assert lock_path(store).name == ".s.zarr.lock" and lock_path("s3://bucket/s.zarr") is None
    assert [p.name for p in tmp_path.iterdir()] == ["s.zarr"]  # the lock file goes with the lock
