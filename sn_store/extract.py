"""Extraction: batched forward passes that record every chosen site of every chosen layer at the last prompt
position (the first generated token's position), plus the base model's answer, into the activation store."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__, checks
from . import store as zstore
from .datasets import Dataset, DatasetSpec, load_dataset
from .datasets.options import allowed_argmax
from .errors import SnError
from .locking import writer_lock
from .models import SITES, Adapter, config_hash, load_model
from .workspace import subdir

FLOAT16_MAX = float(np.finfo(np.float16).max)


def parse_layers(layers: str | list[int] | None, num_layers: int) -> list[int]:
    """`None`/"all" -> every layer; "0,2,5-7" or a list -> those layers (negative counts from the end)."""
    if layers is None or layers == "all":
        return list(range(num_layers))
    if isinstance(layers, str):
        layers = checks.layer_list(layers)
    out = sorted({layer % num_layers if -num_layers <= layer < 0 else layer for layer in layers})
    bad = [layer for layer in out if not 0 <= layer < num_layers]
    if bad or not out:
        raise SnError(f"--layers: {bad or 'none'} not in 0..{num_layers - 1} (the model has {num_layers} layers)")
    return out


def parse_sites(sites: str | list[str] | None) -> list[str]:
    if sites is None:
        return list(SITES)
    names = [s.strip() for s in sites.split(",")] if isinstance(sites, str) else list(sites)
    bad = [s for s in names if s not in SITES]
    if bad or not names:
        raise SnError(f"--sites: {bad or 'none'} unknown; choose from {list(SITES)}")
    return [s for s in SITES if s in names]  # canonical order, no duplicates


@dataclass
class Capture:
    """The last-position vector of each (layer, site), laid out as one (batch, layer, neuron) array."""

    adapter: Adapter
    layers: list[int]
    sites: list[str]
    stop_early: bool

    def __post_init__(self):
        wanted = [(layer, site) for layer in self.layers for site in self.sites]
        self.recorder = self.adapter.recorder(wanted, stop=self.stop_early)

    def run(self, inputs: dict[str, torch.Tensor], verbalizer_ids: list[int] | None):
        """One forward pass; returns (activations, verbalizer logits or None) on the CPU."""
        out = self.recorder.run(inputs, logits_to_keep=1)
        got = self.recorder.values
        acts = torch.stack([torch.cat([got[(layer, s)] for s in self.sites], dim=-1) for layer in self.layers], dim=1)
        logits = None if out is None or verbalizer_ids is None else out.logits[:, -1, verbalizer_ids]
        return acts.cpu().numpy(), None if logits is None else logits.float().cpu().numpy()


def fingerprint(meta: dict) -> str:
    """What determines the stored values; a resumed run must match it."""
    return hashlib.sha256(json.dumps(_basis(meta), sort_keys=True).encode()).hexdigest()[:16]


def _basis(meta: dict) -> dict:
    """The part of the store's metadata the fingerprint covers: not the fingerprint itself, not `attn_heads` and the
    spec's prompt variants (they do not change what is stored, and stores made before them resume unchanged)."""
    basis = {k: v for k, v in meta.items() if k not in ("fingerprint", "attn_heads")}
    spec = basis["dataset"].get("spec") or {}
    if "prompt_variants" in spec:
        basis["dataset"] = {**basis["dataset"], "spec": {k: v for k, v in spec.items() if k != "prompt_variants"}}
    return basis


def default_store_path(model: str, dataset: str, fingerprint: str) -> str:
    """`$SN_HOME/stores/<model>__<dataset>-<fingerprint>.zarr`: the one naming rule of `sn extract`, the probe flow
    and the Python API, so the same extraction lands in the same store (and is done once), and other settings or
    changed dataset files in another."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{Path(model).name or model}__{dataset}-{fingerprint[:8]}")
    return str(subdir("stores") / f"{slug}.zarr")


def check_verbalizers(adapter: Adapter, spec: DatasetSpec) -> list[int]:
    ids = adapter.verbalizer_ids(spec.class_verbalizers)
    seen: dict[int, str] = {}
    for cls, tok in zip(spec.classes, ids, strict=True):
        if tok in seen:
            token = adapter.tokenizer.convert_ids_to_tokens(tok)
            raise SnError(f"dataset {spec.name}: classes {seen[tok]!r} and {cls!r} have verbalizers that begin with "
                          f"the same token {token!r}; set distinct `verbalizers` in the spec")
        seen[tok] = cls
    return ids


def _batches(ds: Dataset, chunks: list[tuple[int, int]], batch_size: int) -> Iterator[tuple[int, int]]:
    for start, stop in chunks:  # batches never straddle chunks, so a resumed run batches exactly as a fresh one
        for a in range(start, stop, batch_size):
            yield a, min(a + batch_size, stop)


def _prepare(adapter: Adapter, ds: Dataset, a: int, b: int) -> dict[str, torch.Tensor]:
    samples = ds.samples[a:b]
    return adapter.to_device(adapter.build_inputs([s.load_images() for s in samples], [s.question for s in samples]))


def _to_store_dtype(acts: np.ndarray, dtype: str, ds: Dataset, a: int, layers: list[int]) -> np.ndarray:
    if dtype == "float16":
        finite = np.isfinite(acts)
        over = finite & (np.abs(acts) > FLOAT16_MAX)
        if over.any():
            i, li, _ = np.argwhere(over)[0]
            raise SnError(f"sample {ds.samples[a + i].id}: activation {acts[i, li].max():.4g} at layer {layers[li]} "
                          "is out of float16 range; extract with --dtype float32")
    return acts.astype(dtype)


def extract(model: str | Adapter, dataset: str | DatasetSpec | Dataset, *, store: str | None = None,
            sites: str | list[str] | None = None, layers: str | list[int] | None = None, batch_size: int = 16,
            baseline: bool = True, dtype: str = "float16", overwrite: bool = False, chunk_samples: int = 256,
            chunk_neurons: int = 4096, device: str | None = None, model_dtype: str | None = None,
            progress: bool = True, on_chunk: Callable[[int, int], None] | None = None,
            lock_wait_s: float | None = None) -> str:
    """Extract activations of `model` on `dataset` into a Zarr store; resume it if a previous run was cut short.

    `model_dtype` is the weights' dtype (default: bfloat16 on CUDA, float32 on CPU); `dtype` the stored one.
    `on_chunk(done, total)` is called after every stored chunk (e.g. to publish progress elsewhere).
    While another process writes the same store, wait for it up to `lock_wait_s` seconds (None: as long as it
    takes; 0: refuse). Returns the store path. See DESIGN.md "Store" for the layout.
    """
    if dtype not in ("float16", "float32"):
        raise SnError(f"--dtype must be float16 or float32, not {dtype!r}")
    if batch_size < 1:
        raise SnError("--batch-size must be at least 1")
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    adapter = model if isinstance(model, Adapter) else load_model(model, dtype=model_dtype, device=device)
    spec = ds.spec
    verbalizer_ids = check_verbalizers(adapter, spec)
    layers = parse_layers(layers, adapter.num_layers)
    sites = parse_sites(sites)

    layout = zstore.Layout(
        n_samples=len(ds), layers=layers, sites=sites, widths={s: adapter.site_width(s) for s in sites},
        classes=list(spec.classes), dtype=dtype, chunk_samples=chunk_samples, chunk_neurons=chunk_neurons,
        sample_ids=[s.id for s in ds.samples],
    )
    meta = adapter_provenance(adapter) | {
        "dataset": {"name": spec.name, "content_hash": ds.content_hash, "spec": spec.public_dict(),
                    "base_dir": str(Path(spec.base_dir).resolve()), "skipped": ds.skipped},
        "sites": sites, "layers": layers, "dtype": dtype, "baseline": baseline,
        "verbalizers": spec.class_verbalizers, "verbalizer_ids": verbalizer_ids,
        "chunks": [chunk_samples, chunk_neurons], "classes": list(spec.classes),
    }
    if "attn" in sites:  # not in the fingerprint: stores made before it resume unchanged
        meta["attn_heads"] = adapter.model.config.get_text_config().num_attention_heads
    meta["fingerprint"] = fingerprint(meta)
    path = store or default_store_path(adapter.source, spec.name, meta["fingerprint"])
    with writer_lock(path, lock_wait_s):
        writer, created = _open_or_create(path, layout, ds, meta, overwrite)
        if writer is None:
            return path  # already complete with these arguments
        try:
            _run(adapter, ds, writer, layout, verbalizer_ids if baseline else None, batch_size, progress, on_chunk)
        except Exception:
            if created and writer.n_done == 0:
                zstore.remove(path)  # nothing of value written: leave no half store behind
            raise
        writer.finish()
    return path


def adapter_provenance(adapter: Adapter) -> dict:
    config = adapter.model.config
    return {
        "model": {"id": adapter.source, "model_type": config.model_type,
                  "revision": getattr(config, "_commit_hash", None), "config_hash": config_hash(adapter),
                  "dtype": str(adapter.model.dtype).removeprefix("torch.")},
        "prompt": adapter.prompt("{question}"),
    }


def _open_or_create(path: str, layout: zstore.Layout, ds: Dataset, meta: dict, overwrite: bool):
    """The store to write into and whether it is new; None when it is already complete with these arguments.
    `overwrite` replaces a store (even a damaged one) and nothing else; a creation that was killed before the store
    had its attributes is made again."""
    existing = zstore.inspect(path)
    if existing.kind == "other":
        raise SnError(f"--store {path}: exists and is not an activation store ({existing.problem}); "
                      "choose another --store (nothing there was touched)")
    if existing.kind == "damaged" and not overwrite:
        raise SnError(f"{existing.problem}; pass --overwrite (overwrite=True in Python) to extract it again")
    if existing.kind == "store" and not overwrite:
        if existing.attrs.fingerprint != meta["fingerprint"]:
            raise SnError(_mismatch(path, existing.attrs, meta))
        return (None, False) if existing.attrs.complete else (zstore.StoreWriter(path), False)
    attrs = meta | {"sn_store_version": __version__, "created_by": "sn_store.extract"}
    return zstore.StoreWriter.create(path, layout, ds.labels, ds.split, attrs, ds.class_mask), True


def _mismatch(path: str, old: zstore.StoreAttrs, meta: dict) -> str:
    """Why an existing store does not fit these arguments: the dataset's files changed, or which arguments differ."""
    fix = "pass --overwrite (overwrite=True in Python) to re-extract, or use another --store"
    before = old.dataset or zstore.DatasetProvenance()
    same_data = {**meta, "dataset": {**meta["dataset"], "content_hash": before.content_hash,
                                     "skipped": before.skipped}}
    if fingerprint(same_data) == old.fingerprint:
        return (f"store {path}: the dataset's content changed since this store was made (hash "
                f"{before.content_hash} -> {meta['dataset']['content_hash']}): {fix}")
    stored = old.model_dump(exclude_unset=True)
    stored = _basis(stored | {"dataset": stored.get("dataset") or {}})
    differ = [k for k, v in _basis(meta).items() if stored.get(k) != v]
    return (f"store {path} was made with other arguments ({', '.join(differ) or 'its fingerprint'} differ): "
            f"{fix}")


def _run(adapter: Adapter, ds: Dataset, writer: zstore.StoreWriter, layout: zstore.Layout,
         verbalizer_ids: list[int] | None, batch_size: int, progress: bool,
         on_chunk: Callable[[int, int], None] | None) -> None:
    start = writer.n_done
    capture = Capture(adapter, layout.layers, layout.sites, stop_early=verbalizer_ids is None)
    bar = tqdm(total=len(ds), initial=start, unit="sample", desc="extract", disable=not progress, dynamic_ncols=True)
    with capture.recorder, torch.inference_mode(), ThreadPoolExecutor(1) as pool, bar:
        for c0, c1 in layout.sample_chunks(start):
            acts = np.empty((c1 - c0, len(layout.layers), layout.n_neurons), dtype=layout.dtype)
            logits = np.empty((c1 - c0, len(layout.classes)), dtype=np.float32)
            spans = list(_batches(ds, [(c0, c1)], batch_size))
            # Prepare the next batch (image decoding, processor) while the current one runs through the model.
            pending = pool.submit(_prepare, adapter, ds, *spans[0])
            for i, (a, b) in enumerate(spans):
                inputs = pending.result()
                if i + 1 < len(spans):
                    pending = pool.submit(_prepare, adapter, ds, *spans[i + 1])
                batch_acts, batch_logits = capture.run(inputs, verbalizer_ids)
                acts[a - c0 : b - c0] = _to_store_dtype(batch_acts, layout.dtype, ds, a, layout.layers)
                if batch_logits is not None:
                    logits[a - c0 : b - c0] = batch_logits
                bar.update(b - a)
            has_base = verbalizer_ids is not None
            pred = allowed_argmax(logits, None if ds.class_mask is None else ds.class_mask[c0:c1])  # its options
            writer.write_chunk(c0, acts, pred if has_base else None, logits if has_base else None)
            if on_chunk is not None:
                on_chunk(c1, len(ds))
