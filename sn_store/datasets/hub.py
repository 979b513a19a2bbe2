"""Rows of a dataset kept in the Hugging Face hub's formats: a local folder in the hub's layout (parquet shards), a
`save_to_disk` folder, or a hub id loaded through the `datasets` library (and its cache).

Local folders are read directly (pyarrow, or `load_from_disk`'s memory map), never copied into a cache. Image
columns come back as the `datasets` Image struct `{bytes, path}`, which the dataset layer reads."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from ..errors import SnError
from .formats import MissingSplit, Rows, SplitParams
from .spec import DatasetSpec

log = logging.getLogger(__name__)

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
TWINS = ("lmms-lab/", "lmms-lab-encoder/")  # lmms-eval moved its datasets in 2026; both ids exist in the wild
LOCAL_COPY = ("point --source at a local copy: a folder in the hub's layout (e.g. a `huggingface-cli download "
              "--repo-type dataset` folder with data/*.parquet) or a `save_to_disk` folder")


def hub_rows(spec: DatasetSpec, params: SplitParams, source: str | None = None) -> Rows:
    """Rows of split `params.split` (config `params.config`) of `source` (default: the spec's)."""
    source = source or spec.source
    path = spec.resolve(source)
    if path.is_dir():
        return _local_rows(spec, path, params)
    if path.exists() or not HUB_ID.match(source):
        raise SnError(f"dataset {spec.name}: source {path} is not a folder nor a hub id; {LOCAL_COPY}")
    return _hub_rows(spec, source, params)


def split_name(params: SplitParams) -> str:
    return f"split {params.split!r}" + (f" of config {params.config!r}" if params.config else "")


def _local_rows(spec: DatasetSpec, root: Path, params: SplitParams) -> Rows:
    if (root / "dataset_dict.json").is_file() or (root / "state.json").is_file():
        return _saved_rows(spec, root, params)
    shards = find_shards(root, params.config, params.split)
    if not shards:
        folder = f"{params.config}/ or data/" if params.config else "data/"
        raise MissingSplit(f"dataset {spec.name}: no parquet shards of {split_name(params)} under {root} "
                           f"(looked for {params.split}-*.parquet in {folder} or the folder itself)")
    import pyarrow.parquet as pq

    rows = []
    for shard in shards:  # one shard's table at a time beside the rows: the images are held once, not twice
        rows += pq.read_table(shard).to_pylist()
    return rows


def find_shards(root: Path, config: str | None, split: str) -> list[Path]:
    """The parquet files of a split in the hub's layouts: `<config>/<split>-*.parquet` (named configs),
    `data/<split>-*.parquet` (the default one), the parquet-conversion branch's `<config>/<split>/*.parquet`, or
    the split's files in `root` itself (a user pointing at the config folder)."""
    folders = ([root / config] if config else []) + [root / "data", root]
    for folder in folders:
        for pattern in (f"{split}-*.parquet", f"{split}.parquet", f"{split}/*.parquet"):
            files = sorted(folder.glob(pattern))
            if files:
                return files
    return []


def _saved_rows(spec: DatasetSpec, root: Path, params: SplitParams) -> Rows:
    import datasets

    saved = datasets.load_from_disk(str(root))
    if isinstance(saved, datasets.DatasetDict):
        if params.split not in saved:
            raise MissingSplit(f"dataset {spec.name}: the save_to_disk folder {root} has no split "
                               f"{params.split!r} (it has {sorted(saved)})")
        saved = saved[params.split]
    else:
        state = json.loads((root / "state.json").read_text())
        if state.get("_split") not in (None, params.split):
            raise MissingSplit(f"dataset {spec.name}: the save_to_disk folder {root} holds split "
                               f"{state['_split']!r}, not {params.split!r}")
    return saved.with_format("arrow")[:].to_pylist()


def _hub_rows(spec: DatasetSpec, source: str, params: SplitParams) -> Rows:
    import datasets

    twin = next((source.replace(a, b, 1) for a, b in (TWINS, TWINS[::-1]) if source.startswith(a)), None)
    try:
        return _download(spec, source, params)
    except datasets.exceptions.DatasetNotFoundError as exc:
        if twin is None:
            raise SnError(_unreachable(spec, source, params, exc)) from None
        log.info("dataset %s: %s is not on the hub; trying its twin %s", spec.name, source, twin)
        try:
            return _download(spec, twin, params)
        except SnError:  # the twin exists but cannot give this split: say so
            raise
        except Exception:
            raise SnError(_unreachable(spec, source, params, exc, also=twin)) from None


def _download(spec: DatasetSpec, source: str, params: SplitParams) -> Rows:
    """The split's rows through `datasets.load_dataset`; a missing dataset raises DatasetNotFoundError (the caller
    may try the twin id), anything else one line."""
    import datasets

    params = params.for_source(source)
    try:
        loaded = datasets.load_dataset(source, name=params.config, split=params.split, revision=params.revision)
    except datasets.exceptions.DatasetNotFoundError:
        raise
    except ValueError as exc:
        if "split" in str(exc).lower():
            raise MissingSplit(f"dataset {spec.name}: {source} has no {split_name(params)} "
                               f"({_first_line(exc)})") from None
        raise SnError(_unreachable(spec, source, params, exc)) from None
    except Exception as exc:  # offline, no such repo, a network error: all say how to use a local copy
        raise SnError(_unreachable(spec, source, params, exc)) from None
    return loaded.with_format("arrow")[:].to_pylist()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _unreachable(spec: DatasetSpec, source: str, params: SplitParams, exc: Exception, also: str | None = None) -> str:
    tried = f"{source} (nor its twin {also})" if also else source
    return (f"dataset {spec.name}: cannot load {tried} ({split_name(params)}) from the Hugging Face hub "
            f"({type(exc).__name__}: {_first_line(exc)}) and {_no_folder(spec, source)}; "
            f"offline or without access, {LOCAL_COPY}")


def _no_folder(spec: DatasetSpec, source: str) -> str:
    """Where a relative source was looked for as a folder: a path like `data/POPE` also reads as a hub id."""
    places = dict.fromkeys(str(p.resolve()) for p in (Path.cwd(), Path(spec.base_dir)))
    return f"there is no local folder {source} (looked in {' and '.join(places)})"
