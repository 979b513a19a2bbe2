"""Evaluations of a search run: the base model, the best Super Neuron, and a top-k majority-vote ensemble, each on
the probe and eval splits. Neurons are chosen on the probe split only; the eval split is for reporting."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .search_kernel import confusion_metrics, decision_function
from .store import StoreReader

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


@dataclass(frozen=True)
class Neuron:
    """One Super Neuron classifier: it fires for class `cls` when polarity * (a - threshold) > 0."""

    site: str
    layer: int
    index: int  # within its site
    cls: int  # the class it votes for (binary: the positive class)
    polarity: int
    threshold: float
    scale: float  # its probe standard deviation: margins are compared in these units

    @classmethod
    def from_row(cls, row: dict, cls_index: int, scale: float) -> Neuron:
        return cls(row["site"], row["layer"], row["neuron"], cls_index, row["polarity"], row["threshold"], scale)


def vote_margins(acts: np.ndarray, neurons: list[Neuron], n_classes: int, allowed: np.ndarray | None = None
                 ) -> np.ndarray:
    """Class predictions of a set of neurons from their activations (sample, neuron): majority vote, see `_predict`;
    `allowed` (sample, class) restricts each vote to the options its question has."""
    z = decision_function(acts, [n.polarity for n in neurons], [n.threshold for n in neurons])
    z = z / np.asarray([n.scale if n.scale > 0 else 1.0 for n in neurons], dtype=np.float32)
    by_class = {c: z[:, [j for j, n in enumerate(neurons) if n.cls == c]] for c in {n.cls for n in neurons}}
    return _predict(by_class, n_classes, allowed)


def _predict(z_by_class: dict[int, np.ndarray], n_classes: int, allowed: np.ndarray | None = None) -> np.ndarray:
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
    if allowed is not None:  # options a question does not have get no votes
        votes, best = np.where(allowed, votes, -1), np.where(allowed, best, -np.inf)
    return np.argmax(np.where(votes == votes.max(1, keepdims=True), best, -np.inf), axis=1)


def with_scales(store: StoreReader, picked: list[tuple[int, dict]], probe: np.ndarray):
    """Neurons of (class, leaderboard row) pairs with their probe spread, and their activations (sample, neuron)."""
    acts = store.neurons([(r["site"], r["layer"], r["neuron"]) for _, r in picked])
    scales = np.nanstd(acts[probe], axis=0)
    return [Neuron.from_row(r, c, float(sd)) for (c, r), sd in zip(picked, scales, strict=True)], acts


def choose(store: StoreReader, table: pa.Table, k: int, probe: np.ndarray) -> tuple[list[Neuron], np.ndarray]:
    """The top-k neurons of every class (binary: of the positive class) and their activations."""
    names = store.classes
    wanted = [1] if len(names) == 2 else list(range(len(names)))
    return with_scales(store, [(c, r) for c in wanted for r in ranked(table, names[c], k)], probe)


def sn_predictions(store: StoreReader, neurons: list[Neuron]) -> np.ndarray:
    acts = store.neurons([(n.site, n.layer, n.index) for n in neurons])
    return vote_margins(acts, neurons, store.n_classes)


def evaluate_run(path: str | StoreReader, table: pa.Table, ensemble_k: int = 5) -> list[dict]:
    """Rows of DuckDB `evaluations` (without run_id) for the model, the best SN and the top-k ensemble."""
    store = path if isinstance(path, StoreReader) else StoreReader(path)
    y, split, n_classes = store.labels, store.split, store.n_classes
    probe = store.probe
    methods: dict[str, tuple[np.ndarray, list]] = {}
    if store.model_pred is not None:
        methods["model"] = (store.model_pred, [])
    for method, k in (("sn", 1), ("sn_ensemble", ensemble_k)):
        neurons, acts = choose(store, table, k, probe)
        methods[method] = (vote_margins(acts, neurons, n_classes, store.class_mask), neurons)
    rows = []
    for method, (pred, used) in methods.items():
        detail = json.dumps([{"site": n.site, "layer": n.layer, "neuron": n.index, "class": n.cls,
                              "polarity": n.polarity, "threshold": str(n.threshold)} for n in used])
        for name in SPLITS:
            m = split == name
            rows.append({"method": method, "split": name,
                         **class_metrics(pred[m], y[m], n_classes, store.positive_index), "detail": detail})
    return rows
