"""The activation store: a Zarr v3 group that plain `xarray.open_zarr(path, consolidated=False)` reads.

Layout (DESIGN.md "Store"): `activations(sample, layer, neuron)`, per-sample `label`, `split`, `sample_id`,
`model_pred`, `model_logits(sample, class)`, coordinates `layer`, `neuron_site`, `neuron_index`, `class`.
Extraction writes whole sample chunks in order and records `n_done` after each, so a killed run resumes at the
first chunk not recorded; `complete` turns true only after the last one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec

from .errors import SnError

DIMS = ("sample", "layer", "neuron")
# lz4 + byte shuffle: ~GB/s, so compression never becomes the bottleneck of extraction.
COMPRESSOR = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")


@dataclass(frozen=True)
class Layout:
    """Shape, chunking and coordinates of a store."""

    n_samples: int
    layers: list[int]
    sites: list[str]
    widths: dict[str, int]  # neurons per site
    classes: list[str]
    dtype: str = "float16"
    chunk_samples: int = 256
    chunk_neurons: int = 4096
    sample_ids: list[str] = field(default_factory=list)

    @property
    def n_neurons(self) -> int:
        return sum(self.widths[s] for s in self.sites)

    def neuron_coords(self) -> tuple[np.ndarray, np.ndarray]:
        site = np.concatenate([np.full(self.widths[s], s, dtype=object) for s in self.sites])
        index = np.concatenate([np.arange(self.widths[s], dtype=np.int32) for s in self.sites])
        return site, index

    def sample_chunks(self, start: int = 0) -> list[tuple[int, int]]:
        step = self.chunk_samples
        return [(a, min(a + step, self.n_samples)) for a in range(start, self.n_samples, step)]


def _array(group: zarr.Group, name: str, dims: tuple[str, ...], data: np.ndarray | None = None, *, shape=None,
           dtype=None, chunks=None, fill_value: Any = None, compressors: Any = "auto") -> zarr.Array:
    shape = shape if shape is not None else data.shape
    dtype = dtype if dtype is not None else (str if data.dtype == object else data.dtype)
    arr = group.create_array(name, shape=shape, dtype=dtype, chunks=chunks or shape, dimension_names=dims,
                             fill_value=fill_value, compressors=compressors)
    if data is not None:
        arr[...] = data
    return arr


def create(path: str, layout: Layout, labels: np.ndarray, split: list[str], attrs: dict[str, Any]) -> zarr.Group:
    """Create an empty store (activations unwritten) with every per-sample and coordinate array filled in."""
    group = zarr.open_group(path, mode="w", zarr_format=3)
    n, cs = layout.n_samples, layout.chunk_samples
    acts = _array(group, "activations", DIMS, shape=(n, len(layout.layers), layout.n_neurons), dtype=layout.dtype,
                  chunks=(cs, 1, min(layout.chunk_neurons, layout.n_neurons)), fill_value=0,
                  compressors=COMPRESSOR)
    acts.attrs["coordinates"] = "neuron_site neuron_index"
    site, index = layout.neuron_coords()
    _array(group, "layer", ("layer",), np.asarray(layout.layers, dtype=np.int32))
    _array(group, "neuron_site", ("neuron",), site)
    _array(group, "neuron_index", ("neuron",), index)
    _array(group, "class", ("class",), np.asarray(layout.classes, dtype=object))
    _array(group, "label", ("sample",), labels.astype(np.int16), chunks=(cs,))
    _array(group, "split", ("sample",), np.asarray(split, dtype=object), chunks=(cs,))
    _array(group, "sample_id", ("sample",), np.asarray(layout.sample_ids, dtype=object), chunks=(cs,))
    _array(group, "model_pred", ("sample",), shape=(n,), dtype=np.int16, chunks=(cs,), fill_value=-1)
    _array(group, "model_logits", ("sample", "class"), shape=(n, len(layout.classes)), dtype=np.float32,
           chunks=(cs, len(layout.classes)), fill_value=np.nan)
    group.attrs.update({**attrs, "n_done": 0, "complete": False})
    return group


def write_chunk(group: zarr.Group, start: int, acts: np.ndarray, pred: np.ndarray | None,
                logits: np.ndarray | None) -> None:
    """Write one whole sample chunk, then record it as done (in that order, so a kill in between only redoes it)."""
    stop = start + len(acts)
    group["activations"][start:stop] = acts
    if pred is not None:
        group["model_pred"][start:stop] = pred
        group["model_logits"][start:stop] = logits
    group.attrs["n_done"] = stop


def finish(group: zarr.Group) -> None:
    group.attrs["complete"] = True


def open_group(path: str, mode: str = "r") -> zarr.Group | None:
    """The store's group, or None when nothing is there."""
    try:
        return zarr.open_group(path, mode=mode, zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
        return None


def remove(path: str) -> None:
    fs, root = fsspec.core.url_to_fs(path)
    if fs.exists(root):
        fs.rm(root, recursive=True)


def open_finished(path: str, require_complete: bool = True) -> zarr.Group:
    """The store's group; refuses a path with no store, and an unfinished store unless told otherwise."""
    group = open_group(path)
    if group is None or "activations" not in group:
        raise SnError(f"store {path}: no activation store there")
    if require_complete and not group.attrs.get("complete", False):
        raise SnError(f"store {path}: extraction has not finished (run `sn extract` again to resume it)")
    return group


def open_store(path: str, require_complete: bool = True) -> xr.Dataset:
    """The store as an `xarray.Dataset` (lazy, dask-backed); refuses an unfinished store unless told otherwise."""
    open_finished(path, require_complete)
    return xr.open_zarr(path, consolidated=False)
