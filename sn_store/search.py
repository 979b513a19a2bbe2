"""The search over a whole store: one kernel task per (layer, neuron block), scheduled by Dask (local threads by
default, a `dask.distributed` cluster when given an address). Each task reads its own block from the Zarr store,
so workers never receive activations through the scheduler."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import dask
import numpy as np
import pyarrow as pa
from dask.callbacks import Callback
from tqdm.auto import tqdm

from . import store as zstore
from .errors import SnError
from .sav import fit_sav, sav_refusal
from .search_kernel import COLUMNS, fit_block

MODES = ("exact", "grid")


@dataclass(frozen=True)
class Block:
    layer_pos: int  # position on the store's layer axis
    start: int  # neuron range on the store's neuron axis
    stop: int


@dataclass(frozen=True)
class StoreInputs:
    """What every block task needs besides its activations: small per-sample arrays."""

    path: str
    labels: np.ndarray
    probe: np.ndarray
    model_pred: np.ndarray | None
    n_classes: int


def blocks(n_layers: int, n_neurons: int, width: int) -> list[Block]:
    return [Block(li, a, min(a + width, n_neurons)) for li in range(n_layers) for a in range(0, n_neurons, width)]


def fit_store_block(inputs: StoreInputs, block: Block, mode: str, n_grid: int) -> dict[str, np.ndarray]:
    """Read one block from the store and fit it; `neuron` comes back on the store's neuron axis."""
    acts = zstore.read_block(inputs.path, block.layer_pos, block.start, block.stop)
    out = fit_block(acts, inputs.labels, inputs.probe, inputs.model_pred, inputs.n_classes, mode=mode, n_grid=n_grid)
    out["neuron"] = out["neuron"] + block.start
    out["layer_pos"] = np.full(len(out["neuron"]), block.layer_pos, dtype=np.int32)
    return out


class _Bar(Callback):
    """A tqdm bar over finished kernel tasks on the local scheduler."""

    def __init__(self, bar: tqdm):
        super().__init__()
        self.bar = bar

    def _posttask(self, key, result, dsk, state, worker_id):
        if isinstance(result, dict):
            self.bar.update(1)


def _compute(tasks: list, address: str | None, bar: tqdm) -> list[dict]:
    if address is None:
        with _Bar(bar):
            return list(dask.compute(*tasks, scheduler="threads"))
    from distributed import Client, as_completed

    try:
        client = Client(address, timeout="20s")
    except OSError as exc:
        raise SnError(f"cannot reach the Dask scheduler at {address} ({exc})") from None
    with client:
        futures = client.compute(tasks)
        for _ in as_completed(futures):
            bar.update(1)
        return client.gather(futures)


def load_inputs(store: zstore.StoreReader) -> StoreInputs:
    if not store.probe.any():
        raise SnError(f"store {store.path}: no probe samples")
    return StoreInputs(store.path, store.labels, store.probe, store.model_pred, store.n_classes)


def fit_store(path: str | zstore.StoreReader, mode: str = "exact", n_grid: int = 61, dask_address: str | None = None,
              block_neurons: int | None = None, progress: bool = True) -> pa.Table:
    """Fit every neuron of the store; returns one row per (neuron, class) with the columns of DuckDB `neurons`."""
    if mode not in MODES:
        raise SnError(f"--mode must be one of {MODES}, not {mode!r}")
    dask_address = dask_address or os.environ.get("SN_DASK_ADDRESS") or None
    store = path if isinstance(path, zstore.StoreReader) else zstore.StoreReader(path)
    inputs = load_inputs(store)
    width = block_neurons or store.chunk_neurons  # one task per stored neuron chunk: each reads whole chunks
    todo = blocks(store.shape[1], store.shape[2], width)
    tasks = [dask.delayed(fit_store_block)(inputs, b, mode, n_grid) for b in todo]
    with tqdm(total=len(tasks), unit="block", desc="search", disable=not progress, dynamic_ncols=True) as bar:
        parts = _compute(tasks, dask_address, bar)
    return to_table(parts, store)


def to_table(parts: list[dict], store: zstore.StoreReader) -> pa.Table:
    """Kernel columns plus site, layer and index-within-site names from the store's coordinates."""
    cols = {k: np.concatenate([p[k] for p in parts]) for k in (*COLUMNS, "layer_pos")}
    index = store.neuron_index
    layers = np.asarray(store.layers)
    classes = np.asarray(store.classes, dtype=object)
    table = {
        "site": store.neuron_site[cols["neuron"]].astype(str),
        "layer": layers[cols["layer_pos"]].astype(np.int32),
        "neuron": index[cols["neuron"]].astype(np.int32),
        "class": classes[cols["class"]].astype(str),
    }
    table |= {k: cols[k] for k in COLUMNS if k not in ("neuron", "class")}
    return pa.table(table)


def search(store: str, mode: str = "exact", *, n_grid: int = 61, dask_address: str | None = None,
           ensemble_k: int = 5, db: str | None = None, block_neurons: int | None = None,
           progress: bool = True, sav: bool | None = None, sav_heads: int = 20, reuse: bool = True) -> str:
    """Search every neuron of `store`, evaluate the model, the best SN, the top-k ensemble and the SAV baseline,
    and write it all to the DuckDB leaderboard in one transaction. Returns the run id.

    `sav`: None runs SAV when the store allows it (an `attn` site and `attn_heads`; a store with the site that
    cannot says why in one line on stderr), True requires it, False skips it. `reuse`: a store whose very contents
    were searched with the same settings already gets that run's id back (`finished_run`) instead of a second
    identical run."""
    from .evaluate import evaluate_run
    from .leaderboard import write_run

    if ensemble_k < 1:
        raise SnError("--ensemble-k must be at least 1")
    reader = zstore.StoreReader(store)
    done = finished_run(reader, mode, ensemble_k, db, n_grid) if reuse else None
    if done:
        return done
    run_sav = _sav_wanted(reader, sav, sav_heads)  # refused before the search, not after it
    table = fit_store(reader, mode, n_grid, dask_address, block_neurons, progress)
    sav_result = fit_sav(reader, sav_heads) if run_sav else None
    evaluations = evaluate_run(reader, table, ensemble_k) + (sav_result.evaluations if sav_result else [])
    return write_run(db, run_row(reader, mode, ensemble_k, n_grid), table, evaluations,
                     sav_result.heads if sav_result else None, check=reader.check_unchanged)


def run_row(store: zstore.StoreReader, mode: str, ensemble_k: int, n_grid: int = 61) -> dict:
    """The DuckDB `runs` row of a search: provenance a store does not have is NULL."""
    model = store.attrs.model or zstore.ModelProvenance()
    dataset = store.attrs.dataset or zstore.DatasetProvenance()
    return {
        "store": store.path, "model": model.id, "dataset": dataset.name, "mode": mode,
        "n_probe": int(store.probe.sum()), "n_eval": int((store.split == "eval").sum()), "classes": store.classes,
        "dataset_hash": dataset.content_hash, "model_config_hash": model.config_hash,
        "store_fingerprint": store.attrs.fingerprint, "ensemble_k": ensemble_k,
        "n_grid": n_grid if mode == "grid" else None,
    }


def finished_run(store: str | zstore.StoreReader, mode: str, ensemble_k: int, db: str | None = None,
                 n_grid: int = 61) -> str | None:
    """The run of an earlier search of the same store contents (its extraction fingerprint) with the same mode,
    grid and ensemble size, if the database has one. A store without a fingerprint (written by another program)
    has none."""
    from .leaderboard import find_run

    reader = store if isinstance(store, zstore.StoreReader) else zstore.StoreReader(store)
    fingerprint = reader.attrs.fingerprint
    return find_run(db, fingerprint, mode, ensemble_k, n_grid) if fingerprint else None


def _sav_wanted(store: zstore.StoreReader, wanted: bool | None, n_heads: int) -> bool:
    """Whether to run SAV: never when not wanted, when possible when unspecified; required: refused (naming what
    the store lacks) when impossible."""
    if wanted is False:
        return False
    if n_heads < 1:
        raise SnError("--sav-heads must be at least 1")
    refusal = sav_refusal(store)
    if refusal and wanted:
        raise SnError(refusal)
    if refusal and "attn" in store.sites:  # it looks as if it could: say why not (without attn: nothing to say)
        print(f"note: no SAV baseline: {refusal}", file=sys.stderr, flush=True)
    return refusal is None
