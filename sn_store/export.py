"""Export: from a search run to a verified early-exit artifact, recorded in the leaderboard with its evaluation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import zarr

from . import leaderboard
from .artifact import EarlyExitClassifier, build, check_destination, staging
from .datasets import Dataset, load_dataset, parse_spec
from .errors import SnError
from .evaluate import Neuron, choose, class_metrics, positive_index, sn_predictions, with_scales
from .manifest import MANIFEST, ManifestNeuron, ModelSource, Scalar, sha256, write_manifest
from .models import load_model
from .workspace import subdir


def parse_neuron(text: str) -> tuple[str, int, int]:
    m = re.fullmatch(r"(resid|mlp|attn):(\d+):(\d+)", text.strip())
    if not m:
        raise SnError(f"--neuron {text!r}: use SITE:LAYER:INDEX, e.g. mlp:1:42")
    return m[1], int(m[2]), int(m[3])


def pick(group: zarr.Group, table, neuron: str | None, ensemble: int, probe: np.ndarray) -> list[Neuron]:
    """The artifact's neurons: one named neuron, or the top-`ensemble` of each class (as the evaluations chose)."""
    if neuron is None:
        return choose(group, table, ensemble, probe)[0]
    classes = list(group.attrs["classes"])
    if len(classes) != 2:
        raise SnError("--neuron picks one binary classifier; for a multi-class run use --ensemble K")
    site, layer, index = parse_neuron(neuron)
    rows = [r for r in table.filter(_eq(table, site, layer, index)).to_pylist() if r["class"] == classes[1]]
    if not rows:
        raise SnError(f"--neuron {neuron}: no such neuron in the run")
    if rows[0]["polarity"] == 0:
        raise SnError(f"--neuron {neuron}: this neuron has no classifier (NaN or inf values)")
    return with_scales(group, [(1, rows[0])], probe)[0]


def _eq(table, site, layer, index):
    import pyarrow.compute as pc

    return pc.and_(pc.and_(pc.equal(table["site"], site), pc.equal(table["layer"], layer)),
                   pc.equal(table["neuron"], index))


def store_dataset(group: zarr.Group) -> Dataset:
    """The dataset the store was extracted from, checked against the store's content hash."""
    meta = group.attrs["dataset"]
    ds = load_dataset(parse_spec(meta["spec"], meta["name"], meta.get("base_dir", ".")))
    if ds.content_hash != meta["content_hash"]:
        raise SnError(f"dataset {meta['name']} changed since extraction (content hash {ds.content_hash} != "
                      f"{meta['content_hash']}); extract it again")
    return ds


def verify_exit(path: Path, group: zarr.Group, neurons: list[Neuron], batch_size: int) -> dict:
    """Run the artifact on the eval split; its predictions must equal the classifier on the stored activations."""
    clf = EarlyExitClassifier.load(path, device="cpu", finished_only=False)
    ds = store_dataset(group)
    split = np.asarray(group["split"][:]).astype(object)
    idx = np.flatnonzero(split == "eval")
    samples = [ds.samples[i] for i in idx]
    pred = clf.predict_indices([s.load_image() for s in samples], [s.question for s in samples], batch_size)
    want = sn_predictions(group, neurons)[idx]
    mismatch = np.flatnonzero(pred != want)
    if len(mismatch):
        raise SnError(f"the early-exit artifact disagrees with the stored activations on {len(mismatch)} eval "
                      f"samples (first: {samples[mismatch[0]].id})")
    y = np.asarray(group["label"][:]).astype(np.int64)[idx]
    return class_metrics(pred, y, len(group.attrs["classes"]), positive_index(group))


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
    group = zarr.open_group(info["store"], mode="r")
    probe = np.asarray(group["split"][:]).astype(object) == "probe"
    neurons = pick(group, leaderboard.run_neurons(db, run_id), neuron, ensemble, probe)
    model = group.attrs["model"]
    adapter = load_model(model["id"], dtype=model["dtype"], device="cpu")
    fields = {
        "model": ModelSource(**{k: model.get(k) for k in ModelSource.model_fields}),
        "run_id": run_id, "classes": list(group.attrs["classes"]), "verbalizers": group.attrs.get("verbalizers"),
        "prompt": group.attrs["prompt"], "dataset": group.attrs["dataset"]["name"],
        "task_suffix": group.attrs["dataset"]["spec"].get("task_suffix") or "",
        "activation_dtype": group.attrs.get("dtype", "float16"),
        "metrics": {"run": _json_safe(leaderboard.run_evaluations(db, run_id, artifacts=False))},
    }
    slug = "-".join(f"{n.site}{n.layer}.{n.index}" for n in neurons[:3])
    out = Path(out) if out else subdir("artifacts") / f"{run_id}-{slug}"
    detail = json.dumps([ManifestNeuron.of(n).model_dump(mode="json") for n in neurons])
    with staging(out) as tmp:
        manifest = build(adapter, neurons, tmp, **fields)
        evaluations = []
        if verify:
            metrics = verify_exit(tmp, group, neurons, batch_size)
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
