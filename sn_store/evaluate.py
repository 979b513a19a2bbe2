"""Evaluations of a search run: the base model, the best Super Neuron, and a top-k majority-vote ensemble, each on
the probe and eval splits. Neurons are chosen on the probe split only; the eval split is for reporting."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import zarr

from .search_kernel import confusion_metrics, decision_function

SPLITS = ("probe", "eval")


def class_metrics(pred: np.ndarray, y: np.ndarray, n_classes: int, positive: int = 1) -> dict[str, float]:
    """Accuracy, balanced accuracy (mean recall of the classes present), F1 of `positive`, MCC (multi-class
    Gorodkin form, equal to the usual MCC for two classes) and n."""
    n = len(y)
    if n == 0:
        return {"acc": np.nan, "bal_acc": np.nan, "f1": np.nan, "mcc": np.nan, "n": 0}
    conf = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(conf, (y, pred), 1)
    truth, said = conf.sum(1), conf.sum(0)
    present = truth > 0
    tp = conf[positive, positive]
    binary = confusion_metrics(tp, said[positive] - tp, n - truth[positive] - said[positive] + tp, truth[positive] - tp)
    correct = np.trace(conf)
    den = np.sqrt(float(n * n - (said**2).sum()) * float(n * n - (truth**2).sum()))
    return {
        "acc": correct / n,
        "bal_acc": float(np.mean(np.diag(conf)[present] / truth[present])),
        "f1": float(binary["f1"]),
        "mcc": float((correct * n - (said * truth).sum()) / den) if den > 0 else 0.0,
        "n": n,
    }


def ranked(table: pa.Table, class_name: str, k: int) -> list[dict]:
    """The k best valid rows of a class: probe accuracy, then probe balanced accuracy, then a fixed
    (layer, site, neuron) order. Sorted in numpy: a run holds ~600k rows."""
    col = {c: table[c].to_numpy(zero_copy_only=False) for c in ("class", "polarity", "probe_acc", "probe_bal_acc",
                                                                 "layer", "site", "neuron")}
    rows = np.flatnonzero((col["class"] == class_name) & (col["polarity"] != 0))
    site_code = np.unique(col["site"], return_inverse=True)[1]
    keys = [col["neuron"][rows], site_code[rows], col["layer"][rows], -col["probe_bal_acc"][rows],
            -col["probe_acc"][rows]]
    best = rows[np.lexsort(keys)[:k]]
    return table.take(best).to_pylist()


def read_neurons(group: zarr.Group, rows: list[dict]) -> np.ndarray:
    """Activations (sample, len(rows)) of the named neurons, as float32."""
    layers = list(np.asarray(group["layer"][:]))
    sites = np.asarray(group["neuron_site"][:]).astype(object)
    offset = {s: int(np.flatnonzero(sites == s)[0]) for s in dict.fromkeys(sites)}
    acts = group["activations"]
    cols = [acts[:, layers.index(r["layer"]), offset[r["site"]] + r["neuron"]] for r in rows]
    return np.stack(cols, axis=1).astype(np.float32)


def _margins(group: zarr.Group, rows: list[dict], probe: np.ndarray) -> np.ndarray:
    """Margins s*(a - t) scaled by each neuron's probe spread, so that neurons can be compared in a vote."""
    acts = read_neurons(group, rows)
    z = decision_function(acts, [r["polarity"] for r in rows], [r["threshold"] for r in rows])
    scale = np.nanstd(acts[probe], axis=0)
    return z / np.where(scale > 0, scale, 1.0)


def _predict(z_by_class: dict[int, np.ndarray], n_classes: int) -> np.ndarray:
    """Majority vote of one-vs-rest neurons: each class counts its neurons that fire; ties go to the class with
    the strongest margin. For two classes (rows of the positive class only) this is a plain majority vote."""
    if n_classes == 2:
        z = z_by_class[1]
        votes = (z > 0).sum(1)
        tie = 2 * votes == z.shape[1]
        strongest = np.take_along_axis(z, np.nanargmax(np.abs(np.nan_to_num(z)), 1)[:, None], 1)[:, 0]
        return np.where(tie, strongest > 0, 2 * votes > z.shape[1]).astype(np.int64)
    votes = np.stack([(z_by_class[k] > 0).sum(1) for k in range(n_classes)], axis=1)
    best = np.stack([np.nanmax(np.nan_to_num(z_by_class[k], nan=-np.inf), 1) for k in range(n_classes)], axis=1)
    return np.argmax(np.where(votes == votes.max(1, keepdims=True), best, -np.inf), axis=1)


def sn_predictions(group: zarr.Group, table: pa.Table, k: int, probe: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """Predictions of the top-k neurons of every class (k=1: the best SN) and the neurons used."""
    names = list(group.attrs["classes"])
    n_classes = len(names)
    wanted = [1] if n_classes == 2 else list(range(n_classes))
    chosen = {c: ranked(table, names[c], k) for c in wanted}
    z = {c: _margins(group, rows, probe) for c, rows in chosen.items()}
    used = [dict(r, rank=i + 1) for rows in chosen.values() for i, r in enumerate(rows)]
    return _predict(z, n_classes), used


def evaluate_run(path: str, table: pa.Table, ensemble_k: int = 5) -> list[dict]:
    """Rows of DuckDB `evaluations` (without run_id) for the model, the best SN and the top-k ensemble."""
    group = zarr.open_group(path, mode="r")
    y = np.asarray(group["label"][:]).astype(np.int64)
    split = np.asarray(group["split"][:]).astype(object)
    n_classes = len(group.attrs["classes"])
    positive = _positive_index(group)
    probe = split == "probe"
    methods: dict[str, tuple[np.ndarray, list]] = {}
    model_pred = np.asarray(group["model_pred"][:]).astype(np.int64)
    if (model_pred >= 0).all():
        methods["model"] = (model_pred, [])
    methods["sn"] = sn_predictions(group, table, 1, probe)
    methods["sn_ensemble"] = sn_predictions(group, table, ensemble_k, probe)
    rows = []
    for method, (pred, used) in methods.items():
        detail = json.dumps([{k: r[k] for k in ("site", "layer", "neuron", "class", "polarity", "threshold")}
                             for r in used])
        for name in SPLITS:
            m = split == name
            rows.append({"method": method, "split": name, **class_metrics(pred[m], y[m], n_classes, positive),
                         "detail": detail})
    return rows


def _positive_index(group: zarr.Group) -> int:
    classes = list(group.attrs["classes"])
    spec = (group.attrs.get("dataset") or {}).get("spec") or {}
    return classes.index(spec["positive_class"]) if spec.get("positive_class") in classes else 1
