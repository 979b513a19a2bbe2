"""Export: from a search run to a verified early-exit artifact, recorded in the leaderboard with its evaluation."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from . import __version__, leaderboard
from .artifact import EarlyExitClassifier, build, check_destination, staging
from .datasets import Dataset, load_dataset, parse_spec
from .errors import SnError
from .evaluate import Neuron, choose, class_metrics, sn_predictions, with_scales
from .manifest import MANIFEST, ManifestNeuron, ModelSource, Scalar, sha256, write_manifest
from .models import load_model
from .store import DatasetProvenance, StoreReader
from .workspace import subdir


def parse_neuron(text: str) -> tuple[str, int, int]:
    m = re.fullmatch(r"(resid|mlp|attn):(\d+):(\d+)", text.strip())
    if not m:
        raise SnError(f"--neuron {text!r}: use SITE:LAYER:INDEX, e.g. mlp:1:42")
    return m[1], int(m[2]), int(m[3])


def pick(store: StoreReader, table, neuron: str | None, ensemble: int, probe: np.ndarray) -> list[Neuron]:
    """The artifact's neurons: one named neuron, or the top-`ensemble` of each class (as the evaluations chose)."""
    if neuron is None:
        return choose(store, table, ensemble, probe)[0]
    classes = store.classes
    if len(classes) != 2:
        raise SnError("--neuron picks one binary classifier; for a multi-class run use --ensemble K")
    site, layer, index = parse_neuron(neuron)
    rows = [r for r in table.filter(_eq(table, site, layer, index)).to_pylist() if r["class"] == classes[1]]
    if not rows:
        raise SnError(f"--neuron {neuron}: no such neuron in the run")
    if rows[0]["polarity"] == 0:
        raise SnError(f"--neuron {neuron}: this neuron has no classifier (NaN or inf values)")
    return with_scales(store, [(1, rows[0])], probe)[0]


def _eq(table, site, layer, index):
    import pyarrow.compute as pc

    return pc.and_(pc.and_(pc.equal(table["site"], site), pc.equal(table["layer"], layer)),
                   pc.equal(table["neuron"], index))


def store_dataset(store: StoreReader) -> Dataset:
    """The dataset the store was extracted from, checked against the store's content hash. A store written by an
    earlier sn_store (whose hash covered the spec's fields of its day) is taken when its sample ids, labels and
    splits all agree: the caller's check against the stored activations then decides."""
    meta: DatasetProvenance = store.require("dataset")
    if meta.spec is None or meta.name is None:
        raise SnError(f"store {store.path}: attribute `dataset` has no spec or name; export needs the dataset")
    ds = load_dataset(parse_spec(meta.spec, meta.name, meta.base_dir or "."))
    if ds.content_hash == meta.content_hash:
        return ds
    older = store.attrs.sn_store_version != __version__
    same = (older and [s.id for s in ds.samples] == list(store.sample_ids)
            and np.array_equal(ds.labels, store.labels) and list(ds.split) == list(store.split))
    if not same:
        raise SnError(f"dataset {meta.name} changed since extraction (content hash {ds.content_hash} != "
                      f"{meta.content_hash}); extract it again")
    print(f"note: store {store.path} was written by sn_store {store.attrs.sn_store_version}, whose dataset hash "
          f"differs from this version's; its sample ids, labels and splits agree with {meta.name}", file=sys.stderr)
    return ds


def verify_exit(path: Path, store: StoreReader, neurons: list[Neuron], batch_size: int) -> dict:
    """Run the artifact on the eval split; its predictions must equal the classifier on the stored activations."""
    clf = EarlyExitClassifier.load(path, device="cpu", finished_only=False)
    ds = store_dataset(store)
    idx = np.flatnonzero(store.split == "eval")
    samples = [ds.samples[i] for i in idx]
    pred = clf.predict_indices([s.load_images() for s in samples], [s.question for s in samples], batch_size)
    want = sn_predictions(store, neurons)[idx]
    mismatch = np.flatnonzero(pred != want)
    if len(mismatch):
        raise SnError(f"the early-exit artifact disagrees with the stored activations on {len(mismatch)} eval "
                      f"samples (first: {samples[mismatch[0]].id})")
    return class_metrics(pred, store.labels[idx], store.n_classes, store.positive_index)


def export(run: str | None = None, out: str | Path | None = None, *, neuron: str | None = None,
           ensemble: int = 1, db: str | None = None, batch_size: int = 16, verify: bool = True) -> Path:
    """Write the early-exit artifact of a run (default: the latest) to `out`; returns its path.

    With `verify` (default) the artifact is loaded back and run on the eval split, its predictions are checked
    against the stored activations, and its accuracy is recorded as method `early_exit`.
    """
    if ensemble < 1:
        raise SnError("--ensemble must be at least 1")
    if out is not None:
        check_destination(Path(out))  # before any work; checked again just before the artifact is put there
    info = leaderboard.run_row(db, run)
    run_id = info["run_id"]
    store = StoreReader(leaderboard.run_store(info))
    neurons = pick(store, leaderboard.run_neurons(db, run_id), neuron, ensemble, store.probe)
    model, dataset = store.require("model"), store.require("dataset")
    if model.id is None:
        raise SnError(f"store {store.path}: attribute `model.id` is missing; export needs the model")
    adapter = load_model(model.id, dtype=model.dtype, device="cpu")
    fields = {
        "model": ModelSource(**{k: getattr(model, k, None) for k in ModelSource.model_fields}),
        "run_id": run_id, "classes": store.classes, "verbalizers": store.attrs.verbalizers,
        "prompt": store.require("prompt"), "dataset": dataset.name,
        "task_suffix": (dataset.spec or {}).get("task_suffix") or "",
        "activation_dtype": store.activation_dtype,
        "metrics": {"run": _json_safe(leaderboard.run_evaluations(db, run_id, artifacts=False))},
    }
    slug = "-".join(f"{n.site}{n.layer}.{n.index}" for n in neurons[:3])
    out = Path(out) if out else subdir("artifacts") / f"{run_id}-{slug}"
    detail = json.dumps([ManifestNeuron.of(n).model_dump(mode="json") for n in neurons])
    with staging(out) as tmp:
        manifest = build(adapter, neurons, tmp, **fields)
        evaluations = []
        if verify:
            metrics = verify_exit(tmp, store, neurons, batch_size)
            evaluations.append({"method": "early_exit", "split": "eval", **metrics, "detail": detail})
            early = manifest.metrics.model_copy(update={"early_exit_eval": _json_safe([metrics])[0]})
            manifest = manifest.model_copy(update={"metrics": early})
        manifest = write_manifest(tmp, manifest.model_copy(update={"finished": True}))  # the last write: finished
    leaderboard.add_artifact(db, {
        "artifact_id": leaderboard.artifact_id(run_id, out), "run_id": run_id, "path": str(out.resolve()),
        "neurons": detail, "exit_layer": max(n.layer for n in neurons),
        "sha256": sha256(out / MANIFEST), "manifest_digest": manifest.digest,
    }, evaluations)
    return out


def _json_safe(rows: list[dict]) -> list[dict[str, Scalar]]:
    """Rows as JSON scalars: undefined metrics (NaN) become null, values neither number nor string their text."""
    def scalar(v):
        if isinstance(v, float) and not np.isfinite(v):
            return None
        return v if v is None or isinstance(v, (str, int, float)) else str(v)

    return [{k: scalar(v) for k, v in r.items()} for r in rows]
