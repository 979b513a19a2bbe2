"""The activation store: a Zarr v3 group that plain `xarray.open_zarr(path, consolidated=False)` reads.

Layout (DESIGN.md "Store"): `activations(sample, layer, neuron)`, per-sample `label`, `split`, `sample_id`,
`model_pred`, `model_logits(sample, class)`, coordinates `layer`, `neuron_site`, `neuron_index`, `class`.
This module is the only place that knows the layout: `StoreAttrs` is the contract of the group attributes,
`StoreWriter` writes a store (extraction), `StoreReader` reads one (search, evaluation, export, flows), whoever
wrote it.

Extraction writes whole sample chunks in order and records `n_done` after each, so a killed run resumes at the
first chunk not recorded; `complete` turns true only after the last one. Every chunk sn_store writes carries a
crc32c checksum and is written even when it equals the fill value, so a finished store can be checked for missing
chunks by listing its keys, and a changed byte fails the read.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from itertools import product
from math import ceil
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import xarray as xr
import zarr
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

from .errors import SnError

DIMS = ("sample", "layer", "neuron")
# lz4 + byte shuffle: ~GB/s, so compression never becomes the bottleneck of extraction.
COMPRESSOR = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
# A checksum on every chunk: a flipped byte fails the read instead of changing values. Benchmarks set it to None
# to measure its cost.
CHECKSUM: Crc32cCodec | None = Crc32cCodec()
WRITE_ALL = {"array.write_empty_chunks": True}  # a chunk equal to the fill value is stored too: none may be missing
CLASS_MASK = "class_mask"

# Arrays a reader needs, with their dimensions; the others are optional (a store without `model_pred` has no
# baseline, one without `sample_id` numbers its samples).
REQUIRED_ARRAYS = {"activations": DIMS, "label": ("sample",), "split": ("sample",), "layer": ("layer",),
                   "neuron_site": ("neuron",), "neuron_index": ("neuron",)}
OPTIONAL_ARRAYS = {"sample_id": ("sample",), "model_pred": ("sample",), "model_logits": ("sample", "class"),
                   "class": ("class",), CLASS_MASK: ("sample", "class")}
SPLITS = ("probe", "eval")


# ---- the contract of the group attributes ----------------------------------------------------------------------

class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")  # other programs may add their own keys


class ModelProvenance(_Open):
    id: str | None = Field(None, description="hub id, local path or built-in name of the model")
    model_type: str | None = None
    revision: str | None = None
    config_hash: str | None = None
    dtype: str | None = Field(None, description="dtype of the weights during extraction")


class DatasetProvenance(_Open):
    name: str | None = None
    content_hash: str | None = None
    spec: dict[str, Any] | None = Field(None, description="the dataset spec, as sn_store reads it")
    base_dir: str | None = Field(None, description="the folder the spec's relative paths start from")
    skipped: Any = None


class StoreAttrs(_Open):
    """The attributes of an activation store's Zarr group. `classes`, `sites` and `complete` are required; the rest
    is provenance that sn_store writes and other programs may leave out (NULL in DuckDB when absent)."""

    classes: list[str] = Field(min_length=2, description="class names; label and model_pred index into them; "
                               "classes[1] is the positive class of a binary task")
    sites: list[str] = Field(min_length=1, description="sites on the neuron axis, in order (resid, mlp, attn)")
    complete: StrictBool = Field(description="true once every sample is written")
    model: ModelProvenance | None = None
    dataset: DatasetProvenance | None = None
    prompt: str | None = Field(None, description="the chat-templated prompt with a {question} placeholder")
    layers: list[int] | None = Field(None, description="decoder layers on the layer axis")
    attn_heads: int | None = Field(None, ge=1, description="query heads of the attn site (for SAV)")
    fingerprint: str | None = Field(None, description="digest of what determines the stored values")
    n_done: int | None = Field(None, ge=0, description="samples written so far")
    sn_store_version: str | None = None
    store_id: str | None = Field(None, description="random id of this creation: a re-created store gets another")
    dtype: str | None = None
    baseline: bool | None = None
    verbalizers: list[str] | None = Field(None, description="the verbalizer of each class")
    verbalizer_ids: list[int] | None = None
    chunks: list[int] | None = None
    created_by: str | None = None

    @field_validator("classes", "sites")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"names repeat: {v}")
        return v


def schema() -> dict:
    """The JSON schema of the store's group attributes (`sn store schema`)."""
    return StoreAttrs.model_json_schema()


def parse_attrs(path: str, raw: dict) -> StoreAttrs:
    """The validated attributes, or a one-line SnError naming the first missing or wrong key."""
    try:
        return StoreAttrs.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "missing":
            raise SnError(f"store {path}: required attribute `{key}` is missing") from None
        raise SnError(f"store {path}: attribute `{key}`: {err['msg']} (got {str(err['input'])[:60]!r})") from None


def read_attrs(path: str | None) -> StoreAttrs | None:
    """The store's validated attributes, or None where there is no readable store (for reports about old runs)."""
    try:
        group = open_group(path) if path else None
        return None if group is None else parse_attrs(path, dict(group.attrs))
    except SnError:
        return None


# ---- paths and opening -----------------------------------------------------------------------------------------

def resolve(path: str | os.PathLike) -> str:
    """A local path made absolute (runs record where the store is, wherever they are read from); URLs unchanged."""
    path = str(path)
    return path if "://" in path else str(Path(path).expanduser().resolve())


def _is_local(path: str) -> bool:
    return isinstance(fsspec.core.url_to_fs(path)[0], LocalFileSystem)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


def open_group(path: str, mode: str = "r") -> zarr.Group | None:
    """The store's group, or None when no group is there; a damaged `zarr.json` is a one-line SnError."""
    try:
        return zarr.open_group(path, mode=mode, zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
        return None
    except Exception as exc:
        raise SnError(f"store {path}: zarr.json cannot be read ({_one_line(exc)})") from None


def _open_array(path: str, group: zarr.Group, name: str) -> zarr.Array | None:
    try:
        node = group.get(name)
    except Exception as exc:
        raise SnError(f"store {path}: {name}/zarr.json cannot be read ({_one_line(exc)})") from None
    if node is not None and not isinstance(node, zarr.Array):
        raise SnError(f"store {path}: `{name}` is a group, not an array")
    return node


def _chunk_grid(arr: zarr.Array) -> list[tuple[int, ...]]:
    return list(np.ndindex(*arr.cdata_shape)) if arr.shape else [()]


def _has_checksum(arr: zarr.Array) -> bool:
    return any(isinstance(c, Crc32cCodec) for c in arr.metadata.codecs)


def read(path: str, name: str, arr: zarr.Array, selection: Any = ...) -> np.ndarray:
    """`arr[selection]`; a chunk that cannot be decoded (checksum mismatch, corrupt compression, a wrong shape or
    dtype in zarr.json) is a one-line SnError naming the array and the chunk."""
    try:
        return np.asarray(arr[selection])
    except Exception as exc:
        where = _bad_chunk(arr, selection)
        chunk = f", chunk {where}" if where is not None else ""
        raise SnError(f"store {path}: array `{name}`{chunk} cannot be read ({_one_line(exc)}); the store is damaged:"
                      " extract it again (--overwrite)") from None


def _bad_chunk(arr: zarr.Array, selection: Any) -> tuple[int, ...] | None:
    """The first chunk under a basic selection (ints and slices) that fails to decode on its own."""
    sel = selection if isinstance(selection, tuple) else (selection,)
    sel = tuple(slice(None) if s is Ellipsis else s for s in sel) + (slice(None),) * (len(arr.shape) - len(sel))
    ranges = []
    for s, size, step in zip(sel, arr.shape, arr.chunks, strict=False):
        if isinstance(s, slice):
            a, b, _ = s.indices(size)
            ranges.append(range(a // step, ceil(b / step)) if b > a else range(0))
        else:
            ranges.append(range(int(s) % size // step, int(s) % size // step + 1))
    for coords in product(*ranges):
        try:
            arr.get_block_selection(coords)
        except Exception:
            return coords
    return None


def missing_chunk(path: str, arrays: dict[str, zarr.Array]) -> tuple[str, tuple[int, ...]] | None:
    """The first (array, chunk index) whose chunk is not stored, listing the store's keys once.

    Arrays with a checksum were written chunk by chunk, fill values included, so every chunk must be there. An array
    without one (written by another program, or before sn_store wrote checksums) may leave out chunks equal to its
    fill value; only `activations` is checked then, since real activations never fill a whole chunk with zeros."""
    fs, root = fsspec.core.url_to_fs(path)
    root = root.rstrip("/")
    present = {p[len(root) + 1:] for p in fs.find(root)}
    for name, arr in arrays.items():
        if not (_has_checksum(arr) or name == "activations"):
            continue
        for coords in _chunk_grid(arr):
            if f"{name}/{arr.metadata.encode_chunk_key(coords)}" not in present:
                return name, coords
    return None


def read_block(path: str, layer_pos: int, start: int, stop: int) -> np.ndarray:
    """Activations (sample, neuron) of one layer's neuron range; opens the store itself (for Dask workers)."""
    arr = zarr.open_array(f"{path.rstrip('/')}/activations", mode="r", zarr_format=3)
    return read(path, "activations", arr, (slice(None), layer_pos, slice(start, stop)))


# ---- reading ----------------------------------------------------------------------------------------------------

class StoreReader:
    """The read side of a store: validated attributes, layout checks at open, and every array read checked.

    Opening a finished store checks that every chunk is stored; a read of a damaged chunk is a one-line SnError.
    """

    def __init__(self, path: str | os.PathLike, require_complete: bool = True):
        self.path = resolve(path)
        group = open_group(self.path)
        if group is None:
            raise SnError(f"store {self.path}: no activation store there")
        self.attrs = parse_attrs(self.path, dict(group.attrs))
        if require_complete and not self.attrs.complete:
            raise SnError(f"store {self.path}: extraction has not finished (run `sn extract` again to resume it)")
        self.arrays: dict[str, zarr.Array] = {}
        for name in (*REQUIRED_ARRAYS, *OPTIONAL_ARRAYS):
            arr = _open_array(self.path, group, name)
            if arr is None and name in REQUIRED_ARRAYS:
                raise SnError(f"store {self.path}: required array `{name}` is missing")
            if arr is not None:
                self.arrays[name] = arr
        self._check_shapes()
        if self.attrs.complete:
            gone = missing_chunk(self.path, self.arrays)
            if gone:
                raise SnError(f"store {self.path}: array `{gone[0]}`, chunk {gone[1]} is missing; the store is "
                              "damaged: extract it again (--overwrite)")
        self._check_values()
        self.identity = self._identity(self.attrs)

    # -- checks at open
    def _check_shapes(self) -> None:
        acts = self.arrays["activations"]
        if acts.ndim != 3 or np.dtype(acts.dtype).kind != "f":
            raise SnError(f"store {self.path}: `activations` must be a 3-D float array (sample, layer, neuron), "
                          f"not {acts.ndim}-D {acts.dtype}")
        sizes = {"sample": acts.shape[0], "layer": acts.shape[1], "neuron": acts.shape[2], "class": self.n_classes}
        for name, arr in self.arrays.items():
            dims = {**REQUIRED_ARRAYS, **OPTIONAL_ARRAYS}[name]
            want = tuple(sizes[d] for d in dims)
            if arr.shape != want:
                raise SnError(f"store {self.path}: `{name}` has shape {arr.shape}, expected {want} "
                              f"({', '.join(dims)})")
        for name in ("label", "layer", "neuron_index", "model_pred"):
            if name in self.arrays and np.dtype(self.arrays[name].dtype).kind not in "iu":
                raise SnError(f"store {self.path}: `{name}` must hold integers, not {self.arrays[name].dtype}")

    def _check_values(self) -> None:
        bad = np.flatnonzero((self.labels < 0) | (self.labels >= self.n_classes))
        if len(bad):
            raise SnError(f"store {self.path}: `label` of sample {self.sample_ids[bad[0]]} is {self.labels[bad[0]]}, "
                          f"not an index into classes {self.classes}")
        odd = sorted(set(self.split.tolist()) - set(SPLITS))
        if odd:
            raise SnError(f"store {self.path}: `split` holds {odd[:3]}; only 'probe' and 'eval' are allowed")
        unknown = sorted(set(self.neuron_site.tolist()) - set(self.sites))
        if unknown:
            raise SnError(f"store {self.path}: `neuron_site` names {unknown}, not in the `sites` attribute")

    # -- attributes
    @property
    def classes(self) -> list[str]:
        return list(self.attrs.classes)

    @property
    def n_classes(self) -> int:
        return len(self.attrs.classes)

    @property
    def sites(self) -> list[str]:
        return list(self.attrs.sites)

    @property
    def attn_heads(self) -> int | None:
        return self.attrs.attn_heads

    @property
    def positive_index(self) -> int:
        """Index of the positive class: the spec's `positive_class`, else classes[1]."""
        spec = (self.attrs.dataset.spec if self.attrs.dataset else None) or {}
        return self.classes.index(spec["positive_class"]) if spec.get("positive_class") in self.classes else 1

    def require(self, key: str) -> Any:
        """A provenance attribute some step cannot do without (export needs the model), or a one-line SnError."""
        value = getattr(self.attrs, key)
        if value is None:
            raise SnError(f"store {self.path}: attribute `{key}` is missing (this step needs it)")
        return value

    # -- arrays
    def read(self, name: str, selection: Any = ...) -> np.ndarray:
        return read(self.path, name, self.arrays[name], selection)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.arrays["activations"].shape

    @property
    def n_samples(self) -> int:
        return self.shape[0]

    @property
    def activation_dtype(self) -> str:
        return str(self.arrays["activations"].dtype)

    @property
    def chunk_neurons(self) -> int:
        return self.arrays["activations"].chunks[2]

    @cached_property
    def layers(self) -> list[int]:
        return [int(v) for v in self.read("layer")]

    @cached_property
    def labels(self) -> np.ndarray:
        return self.read("label").astype(np.int64)

    @cached_property
    def split(self) -> np.ndarray:
        return self.read("split").astype(object)

    @property
    def probe(self) -> np.ndarray:
        return self.split == "probe"

    @cached_property
    def sample_ids(self) -> list[str]:
        if "sample_id" not in self.arrays:
            return [str(i) for i in range(self.n_samples)]
        return [str(v) for v in self.read("sample_id")]

    @cached_property
    def model_pred(self) -> np.ndarray | None:
        """The base model's answers, or None where the store has none (or not for every sample)."""
        if "model_pred" not in self.arrays:
            return None
        pred = self.read("model_pred").astype(np.int64)
        return pred if (pred >= 0).all() else None

    @cached_property
    def class_mask(self) -> np.ndarray | None:
        return self.read(CLASS_MASK).astype(bool) if CLASS_MASK in self.arrays else None

    @cached_property
    def neuron_site(self) -> np.ndarray:
        return self.read("neuron_site").astype(object)

    @cached_property
    def neuron_index(self) -> np.ndarray:
        return self.read("neuron_index")

    def block(self, layer_pos: int, start: int, stop: int) -> np.ndarray:
        return self.read("activations", (slice(None), layer_pos, slice(start, stop)))

    def neurons(self, keys: list[tuple[str, int, int]]) -> np.ndarray:
        """Activations (sample, len(keys)) of the neurons named by (site, layer, index within the site), float32."""
        offset = {s: int(np.flatnonzero(self.neuron_site == s)[0]) for s in dict.fromkeys(self.neuron_site)}
        cols = [self.read("activations", (slice(None), self.layers.index(layer), offset[site] + index))
                for site, layer, index in keys]
        return np.stack(cols, axis=1).astype(np.float32) if cols else np.empty((self.n_samples, 0), np.float32)

    # -- races
    @staticmethod
    def _identity(attrs: StoreAttrs) -> tuple:
        return attrs.fingerprint, attrs.complete, attrs.store_id, attrs.n_done

    def check_unchanged(self) -> None:
        """Refuse if the store was re-created, re-extracted or removed since it was opened (e.g. by `sn extract
        --overwrite` during a search): results computed from it may mix two stores."""
        try:
            group = open_group(self.path)
            now = None if group is None else self._identity(parse_attrs(self.path, dict(group.attrs)))
        except SnError:
            now = None
        if now != self.identity:
            raise SnError(f"store {self.path} changed while it was being read (re-extracted, overwritten or removed); "
                          "nothing was recorded: run the search again")


def verify(path: str) -> int:
    """Read every chunk of every array of a finished store, so that each checksum is checked (a search reads only
    `activations` and the small arrays); returns the number of chunks read."""
    store = StoreReader(path)
    count = 0
    for name, arr in store.arrays.items():
        for coords in _chunk_grid(arr):
            try:
                arr.get_block_selection(coords)
            except Exception as exc:
                raise SnError(f"store {store.path}: array `{name}`, chunk {coords} cannot be read ({_one_line(exc)});"
                              " the store is damaged: extract it again (--overwrite)") from None
            count += 1
    return count


def open_store(path: str, require_complete: bool = True) -> xr.Dataset:
    """The store as an `xarray.Dataset` (lazy, dask-backed); refuses an unfinished or damaged store."""
    StoreReader(path, require_complete)
    return xr.open_zarr(path, consolidated=False)


# ---- writing ----------------------------------------------------------------------------------------------------

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


def _codecs(compressor) -> list:
    return [compressor, CHECKSUM] if CHECKSUM is not None else [compressor]


def _array(group: zarr.Group, name: str, dims: tuple[str, ...], data: np.ndarray | None = None, *, shape=None,
           dtype=None, chunks=None, fill_value: Any = None, compressor: Any = None) -> zarr.Array:
    shape = shape if shape is not None else data.shape
    dtype = dtype if dtype is not None else (str if data.dtype == object else data.dtype)
    arr = group.create_array(name, shape=shape, dtype=dtype, chunks=chunks or shape, dimension_names=dims,
                             fill_value=fill_value, compressors=_codecs(compressor or ZstdCodec(level=0)),
                             config={"write_empty_chunks": True})
    if data is not None:
        arr[...] = data
    return arr


@dataclass(frozen=True)
class Existing:
    """What is at a store path before extraction: `absent`, `empty` (an empty folder), `interrupted` (a group
    without attributes, left by a creation killed before it finished), `store`, `damaged` (unreadable metadata
    beside an `activations` folder) or `other` (anything else: never replaced)."""

    kind: str
    attrs: StoreAttrs | None = None
    problem: str | None = None


def inspect(path: str) -> Existing:
    fs, root = fsspec.core.url_to_fs(path)
    if not fs.exists(root):
        return Existing("absent")
    if not fs.isdir(root):
        return Existing("other", problem="a file")
    if not fs.ls(root):
        return Existing("empty")
    try:
        group = open_group(path)
    except SnError as exc:
        kind = "damaged" if fs.exists(f"{root}/activations") else "other"
        return Existing(kind, problem=str(exc))
    if group is None:
        return Existing("other", problem="not a Zarr group")
    raw = dict(group.attrs)
    names = {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root)} - {"zarr.json"}
    if not raw and names <= {*REQUIRED_ARRAYS, *OPTIONAL_ARRAYS}:
        return Existing("interrupted")
    if "activations" not in names and "fingerprint" not in raw:
        return Existing("other", problem="a Zarr group that is not an activation store")
    try:
        return Existing("store", parse_attrs(path, raw))
    except SnError as exc:
        return Existing("damaged", problem=str(exc))


class StoreWriter:
    """The write side: creates a store (staged beside its path on a local disk, then moved into place, so a killed
    creation never leaves a half-made store at the path), and writes whole sample chunks into it."""

    def __init__(self, path: str):
        self.path = path
        with zarr.config.set(WRITE_ALL):  # arrays opened now write fill-valued chunks too
            self.group = zarr.open_group(path, mode="r+", zarr_format=3)
            self.arrays = {name: self.group[name] for name in ("activations", "model_pred", "model_logits")}

    @property
    def n_done(self) -> int:
        return int(StoreAttrs.model_validate(dict(self.group.attrs)).n_done or 0)

    @classmethod
    def create(cls, path: str, layout: Layout, labels: np.ndarray, split: list[str], attrs: dict[str, Any],
               class_mask: np.ndarray | None = None) -> StoreWriter:
        """A new empty store (activations unwritten) with every per-sample and coordinate array filled in; replaces
        what is at `path` (the caller decides whether it may)."""
        if not _is_local(path):
            _fill(zarr.open_group(path, mode="w", zarr_format=3), layout, labels, split, attrs, class_mask)
            return cls(path)
        target = Path(path).expanduser().absolute()
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in _stale_siblings(target):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = target.with_name(f".{target.name}.creating-{uuid.uuid4().hex[:8]}")
        try:
            _fill(zarr.open_group(str(tmp), mode="w", zarr_format=3), layout, labels, split, attrs, class_mask)
            _move_into_place(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cls(path)

    def write_chunk(self, start: int, acts: np.ndarray, pred: np.ndarray | None, logits: np.ndarray | None) -> None:
        """Write one whole sample chunk, then record it as done (in that order, so a kill in between only redoes it).
        Without a baseline the fill values are written: every chunk of a finished store is stored."""
        stop = start + len(acts)
        self.arrays["activations"][start:stop] = acts
        n_classes = self.arrays["model_logits"].shape[1]
        self.arrays["model_pred"][start:stop] = pred if pred is not None else np.full(len(acts), -1, np.int16)
        self.arrays["model_logits"][start:stop] = (logits if logits is not None
                                                   else np.full((len(acts), n_classes), np.nan, np.float32))
        self.group.attrs["n_done"] = stop

    def finish(self) -> None:
        self.group.attrs["complete"] = True


def _fill(group: zarr.Group, layout: Layout, labels: np.ndarray, split: list[str], attrs: dict[str, Any],
          class_mask: np.ndarray | None) -> None:
    n, cs = layout.n_samples, layout.chunk_samples
    acts = _array(group, "activations", DIMS, shape=(n, len(layout.layers), layout.n_neurons), dtype=layout.dtype,
                  chunks=(cs, 1, min(layout.chunk_neurons, layout.n_neurons)), fill_value=0, compressor=COMPRESSOR)
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
    if class_mask is not None:  # only when some question has fewer options than the dataset has classes
        _array(group, CLASS_MASK, ("sample", "class"), class_mask.astype(bool), chunks=(cs, class_mask.shape[1]))
    group.attrs.update({**attrs, "store_id": uuid.uuid4().hex, "n_done": 0, "complete": False})


def _stale_siblings(target: Path) -> list[Path]:
    """Folders a killed creation or replacement of `target` left beside it: exactly the names `create` makes
    (`.NAME.creating-<8 hex>`, `.NAME.replaced-<8 hex>`), empty or holding a Zarr group; a user's `.NAME.old-copy`
    is not ours and stays. The caller holds the store's writer lock, so none of them is still being written."""
    made = re.compile(rf"\.{re.escape(target.name)}\.(creating|replaced)-[0-9a-f]{{8}}")
    return [p for p in target.parent.iterdir() if made.fullmatch(p.name) and not p.is_symlink() and p.is_dir()
            and ((p / "zarr.json").is_file() or not any(p.iterdir()))]


def _move_into_place(tmp: Path, target: Path) -> None:
    """Rename the staged store to `target`; an existing store there is renamed aside first, then deleted."""
    old = target.with_name(f".{target.name}.replaced-{uuid.uuid4().hex[:8]}")
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def remove(path: str) -> None:
    fs, root = fsspec.core.url_to_fs(path)
    if fs.exists(root):
        fs.rm(root, recursive=True)


def describe(path: str) -> dict[str, str]:
    """A few lines about a store for the CLI."""
    r = StoreReader(path)
    n, n_layers, n_neurons = r.shape
    out = {"activations": f"{n} samples x {n_layers} layers x {n_neurons} neurons ({r.activation_dtype})",
           "sites": ", ".join(r.sites), "layers": ", ".join(map(str, r.layers)),
           "split": f"{int(r.probe.sum())} probe / {int((r.split == 'eval').sum())} eval",
           "classes": ", ".join(r.classes)}
    if r.model_pred is not None:
        ev = r.split == "eval"
        out["base model eval accuracy"] = f"{(r.model_pred[ev] == r.labels[ev]).mean():.3f}"
    return out

