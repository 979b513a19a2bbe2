"""The paper's analyses of a search run, each a function returning an Arrow table (kept in DuckDB: a table written
here, or a view of `sql/views.sql`) and a `plot_*` drawing it as a PNG:

- accuracy against the threshold alpha over [-3, 3] for the top neurons (Fig. 3a): `threshold_curve`;
- per layer and site, the neurons that beat the base model on probe and eval (Fig. 3b): `layer_counts`;
- agreement with the base model against SN accuracy (Fig. 4): `agreement_vs_accuracy`;
- probe-set size against the eval figures of the best SN re-selected on probe subsets (Fig. 5): `probe_size_curve`;
- the chosen SNs under reworded prompts: `prompt_robustness`;
- the chosen SNs on another store with the same classes (distribution shift): `transfer`.

`write_figures` computes what applies to a run and writes every PNG, for the report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import leaderboard
from . import store as zstore
from .errors import SnError
from .evaluate import SPLITS, Neuron, choose, class_metrics, vote_margins
from .store import StoreReader

ALPHA_RANGE = (-3.0, 3.0)  # the paper's threshold grid
SUITE_TRANSFERS = {"shapes-exist": "shapes-exist-shift"}  # built-in task -> the same task under a shift


# --- shared ---------------------------------------------------------------------------------------------------
def _open_run(db, run_id: str) -> tuple[dict, StoreReader]:
    run = leaderboard.run_row(db, run_id)
    return run, StoreReader(leaderboard.run_store(run))


def _store_rows(db, name: str, table: pa.Table, where: dict) -> pa.Table:
    """Replace the rows of DuckDB table `name` matching `where` (column -> value) by `table`, in one transaction."""
    con = leaderboard.connect(db)
    try:
        con.begin()
        con.execute(f"DELETE FROM {name} WHERE " + " AND ".join(f"{c} = ?" for c in where), list(where.values()))
        con.register("_sn_rows", table)
        con.execute(f"INSERT INTO {name} ({', '.join(table.column_names)}) SELECT * FROM _sn_rows")
        con.unregister("_sn_rows")
        con.commit()
    except BaseException:
        con.rollback()
        raise
    finally:
        con.close()
    return table


def _select(db, sql: str, params: list) -> pa.Table:
    return leaderboard.read_table(db, sql, params)


def _labels(group: StoreReader) -> tuple[np.ndarray, np.ndarray]:
    return group.labels, group.split


def _run_neurons(db, run: dict, group: StoreReader, k: int) -> tuple[list[Neuron], np.ndarray]:
    """The run's top-k neurons per class (binary: of the positive class), chosen on the probe split as the search
    chose them, and their activations in the run's store."""
    _, split = _labels(group)
    return choose(group, leaderboard.run_neurons(db, run["run_id"]), k, split == "probe")


def _model_eval_acc(db, run_id: str) -> float | None:
    rows = [r for r in leaderboard.run_evaluations(db, run_id) if r["method"] == "model" and r["split"] == "eval"]
    return rows[-1]["acc"] if rows else None


# --- Fig. 3a: accuracy against the threshold ---------------------------------------------------------------------
def alpha_grid(n_grid: int = 61) -> np.ndarray:
    return np.linspace(*ALPHA_RANGE, n_grid).astype(np.float32)


def threshold_curve(db, run_id: str, k: int = 5, n_grid: int = 61) -> pa.Table:
    """Accuracy of each of the run's top-k neurons (per class) with its polarity and every threshold alpha of the
    grid, on probe and eval; one-vs-rest accuracy for K > 2, as in `neurons`. Stored as `threshold_curves`."""
    run, group = _open_run(db, run_id)
    y, split = _labels(group)
    top = leaderboard.top(db, run_id, k).to_pylist()
    top = [r for r in top if r["polarity"] != 0 and (len(run["classes"]) > 2 or r["class"] == run["classes"][1])]
    acts = group.neurons([(r["site"], r["layer"], r["neuron"]) for r in top])
    alpha = alpha_grid(n_grid)
    cols: dict[str, list] = {c: [] for c in ("class", "rank", "site", "layer", "neuron", "polarity", "alpha",
                                             "split", "acc")}
    for j, r in enumerate(top):
        fires = r["polarity"] * (acts[:, j, None] - alpha[None, :]) > 0  # (sample, alpha)
        right = fires == (y == run["classes"].index(r["class"]))[:, None]
        for name in SPLITS:
            m = split == name
            if not m.any():
                continue
            for key, value in (("class", r["class"]), ("rank", r["rank"]), ("site", r["site"]),
                               ("layer", r["layer"]), ("neuron", r["neuron"]), ("polarity", r["polarity"]),
                               ("split", name)):
                cols[key] += [value] * len(alpha)
            cols["alpha"] += alpha.tolist()
            cols["acc"] += right[m].mean(0).tolist()
    table = pa.table({"run_id": pa.array([run_id] * len(cols["acc"]), pa.string()),
                      **{c: pa.array(v, _THRESHOLD_TYPES[c]) for c, v in cols.items()}})
    return _store_rows(db, "threshold_curves", table, {"run_id": run_id})


_THRESHOLD_TYPES = {"class": pa.string(), "rank": pa.int32(), "site": pa.string(), "layer": pa.int32(),
                    "neuron": pa.int32(), "polarity": pa.int8(), "alpha": pa.float32(), "split": pa.string(),
                    "acc": pa.float32()}


# --- Fig. 3b and Fig. 4: views over the neurons -------------------------------------------------------------------
def layer_counts(db, run_id: str) -> pa.Table:
    """Per site and layer, how many neurons beat the base model on probe and on eval (view
    `neurons_beating_model`; empty for runs without a base model or with more than two classes)."""
    leaderboard.run_row(db, run_id)
    return _select(db, "SELECT * FROM neurons_beating_model WHERE run_id = ? ORDER BY site, layer", [run_id])


def agreement_vs_accuracy(db, run_id: str, top: int = 2000) -> pa.Table:
    """The run's `top` neurons per class by probe rank: eval accuracy and agreement with the base model (view
    `neuron_agreement`)."""
    leaderboard.run_row(db, run_id)
    return _select(db, "SELECT * FROM neuron_agreement WHERE run_id = ? AND rank <= ? ORDER BY class, rank",
                   [run_id, int(top)])


# --- Fig. 5: probe-set size ---------------------------------------------------------------------------------------
def default_sizes(n_probe: int, n_classes: int) -> list[int]:
    """Doubling probe sizes from the first power of two with two samples per class, up to the whole probe split."""
    return [s for s in (2**i for i in range(2, 32)) if 2 * n_classes <= s < n_probe] + [n_probe]


def stratified_subset(probe: np.ndarray, y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A probe mask of `size` samples drawn per class in proportion (at least one each), deterministic in seed."""
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(probe)
    classes, counts = np.unique(y[idx], return_counts=True)
    take = np.maximum(1, np.floor(counts * size / len(idx)).astype(int))
    for c in np.argsort(-(counts * size / len(idx) - take))[: max(0, size - take.sum())]:
        take[c] += 1  # largest remainders first, so the sizes add up
    mask = np.zeros(len(y), dtype=bool)
    for c, t in zip(classes, take, strict=True):
        members = idx[y[idx] == c]
        mask[rng.permutation(members)[: min(t, len(members))]] = True
    return mask


def _prf(pred: np.ndarray, y: np.ndarray, n_classes: int, positive: int) -> dict[str, float]:
    """Accuracy, precision, recall and F1: of the positive class for two classes, macro-averaged for more."""
    wanted = [positive] if n_classes == 2 else range(n_classes)
    p, r, f = [], [], []
    for c in wanted:
        tp, said, true = np.sum((pred == c) & (y == c)), np.sum(pred == c), np.sum(y == c)
        p.append(tp / said if said else 0.0)
        r.append(tp / true if true else 0.0)
        f.append(2 * tp / (said + true) if said + true else 0.0)
    return {"acc": float(np.mean(pred == y)), "precision": float(np.mean(p)), "recall": float(np.mean(r)),
            "f1": float(np.mean(f))}


def _fit_on(run: dict, group: StoreReader, probe: np.ndarray, n_grid: int) -> pa.Table:
    """The search's neuron table with `probe` as the fitting samples."""
    import dask

    from .search import StoreInputs, blocks, fit_store_block, to_table

    inputs = StoreInputs(group.path, group.labels, probe, group.model_pred, len(run["classes"]))
    todo = blocks(group.shape[1], group.shape[2], group.chunk_neurons)
    parts = dask.compute(*[dask.delayed(fit_store_block)(inputs, b, run["mode"], n_grid) for b in todo],
                         scheduler="threads")
    return to_table(list(parts), group)


def probe_size_curve(db, run_id: str, sizes: list[int] | None = None, seeds: int = 5) -> pa.Table:
    """Eval accuracy, precision, recall and F1 of the best SN re-selected (the search's rule) on stratified
    subsets of the probe split, per size and seed; the base model's eval figures as method `model` (seed -1).
    The search settings (mode, grid) are the run's. Stored as `probe_size_curves`."""
    run, group = _open_run(db, run_id)
    y, split = _labels(group)
    probe, ev, k = split == "probe", split == "eval", len(run["classes"])
    positive, allowed = group.positive_index, group.class_mask
    if sizes is None and probe.sum() < k:  # no subset has a sample of each class: no curve (the report leaves it out)
        return pa.Table.from_pylist([], schema=_SIZE_SCHEMA)
    sizes = sorted(set(sizes or default_sizes(int(probe.sum()), k)))
    if sizes[0] < k or sizes[-1] > probe.sum():
        raise SnError(f"probe sizes must lie in {k}..{int(probe.sum())} (the probe split), got {sizes}")
    rows = []
    for size in sizes:
        for seed in range(seeds if size < probe.sum() else 1):  # the whole split is one subset
            subset = stratified_subset(probe, y, size, seed)
            neurons, acts = choose(group, _fit_on(run, group, subset, run.get("n_grid") or 61), 1, subset)
            pred = vote_margins(acts, neurons, k, allowed)
            rows.append({"method": "sn", "size": size, "seed": seed, **_prf(pred[ev], y[ev], k, positive),
                         "neuron": json.dumps([[n.site, n.layer, n.index, n.polarity, n.threshold] for n in neurons])})
    if group.model_pred is not None:
        rows.append({"method": "model", "size": int(probe.sum()), "seed": -1,
                     **_prf(group.model_pred[ev], y[ev], k, positive), "neuron": None})
    table = pa.Table.from_pylist([{"run_id": run_id, **r} for r in rows], schema=_SIZE_SCHEMA)
    return _store_rows(db, "probe_size_curves", table, {"run_id": run_id})


_SIZE_SCHEMA = pa.schema([("run_id", pa.string()), ("method", pa.string()), ("size", pa.int32()),
                          ("seed", pa.int32()), ("acc", pa.float32()), ("precision", pa.float32()),
                          ("recall", pa.float32()), ("f1", pa.float32()), ("neuron", pa.string())])


# --- prompt robustness -------------------------------------------------------------------------------------------
def _spec_of(run: dict, group: StoreReader):
    """The run's dataset spec as the store recorded it (its sizes, seed and source)."""
    from .datasets.spec import parse_spec

    info = group.attrs.dataset
    if info is None or not info.spec:
        raise SnError(f"store {run['store']}: records no dataset spec, so its prompts cannot be reworded")
    return parse_spec(info.spec, f"recorded in {run['store']}", info.base_dir or ".")


def _variants(spec, given):
    from .datasets.dataset import resolve_spec
    from .datasets.spec import PromptVariant

    if given is not None:
        return [v if isinstance(v, PromptVariant) else PromptVariant(**v) for v in given]
    if spec.prompt_variants:
        return list(spec.prompt_variants)
    try:  # a store made before its spec had variants: the spec of that name now
        return list(resolve_spec(spec.name).prompt_variants)
    except SnError:
        return []


def variant_activations(adapter, samples, keys: list[tuple[str, int, int]], batch_size: int = 16) -> np.ndarray:
    """Activations (sample, len(keys)) of the neurons named by (site, layer, index) on `samples`, running the model
    only up to the deepest layer and site they need."""
    import torch

    out = np.empty((len(samples), len(keys)), dtype=np.float32)
    with adapter.recorder({(layer, site) for site, layer, _ in keys}, stop=True) as rec, torch.inference_mode():
        for a in range(0, len(samples), batch_size):
            batch = samples[a : a + batch_size]
            rec.run(adapter.to_device(adapter.build_inputs([s.load_images() for s in batch],
                                                           [s.question for s in batch])))
            out[a : a + len(batch)] = np.stack([rec.values[(layer, site)][:, index].cpu().numpy()
                                                for site, layer, index in keys], axis=1)
    return out


def prompt_robustness(db, run_id: str, variants: list | None = None, batch_size: int = 16, model=None
                      ) -> pa.Table:
    """The run's best SN and ensemble on the eval split with each reworded prompt (default: the spec's
    `prompt_variants`), beside variant `original` (the store's own activations). Activations are rounded to the
    store's dtype, as the search saw them. `model`: a loaded adapter to reuse (default: the run's model).
    Stored as `prompt_robustness`."""
    from .datasets import load_dataset
    from .models import load_model

    run, group = _open_run(db, run_id)
    spec = _spec_of(run, group)
    todo = _variants(spec, variants)
    if not todo:
        raise SnError(f"dataset {spec.name}: the spec has no prompt_variants to evaluate")
    y, split = _labels(group)
    ev, n_classes, positive = split == "eval", len(run["classes"]), group.positive_index
    allowed = group.class_mask
    chosen = {m: _run_neurons(db, run, group, n) for m, n in (("sn", 1), ("sn_ensemble", run["ensemble_k"] or 5))}
    keys = sorted({(n.site, n.layer, n.index) for ns, _ in chosen.values() for n in ns})
    adapter = model or load_model(run["model"])
    store_ids = np.asarray(group.sample_ids, dtype=object)[ev]
    acts_by_variant = {"original": (group.neurons(keys)[ev], _first_question(spec, store_ids))}
    for variant in todo:
        ds = load_dataset(spec.with_variant(variant))
        samples = [s for s, part in zip(ds.samples, ds.split, strict=True) if part == "eval"]
        if [s.id for s in samples] != list(store_ids):
            raise SnError(f"prompt variant {variant.name}: its eval samples differ from the store's")
        acts = variant_activations(adapter, samples, keys, batch_size)
        acts_by_variant[variant.name] = (acts.astype(group.activation_dtype).astype(np.float32),
                                         samples[0].question if samples else "")
    rows = []
    for name, (acts, prompt) in acts_by_variant.items():
        for method, (neurons, _) in chosen.items():
            cols = [keys.index((n.site, n.layer, n.index)) for n in neurons]
            pred = vote_margins(acts[:, cols], neurons, n_classes, None if allowed is None else allowed[ev])
            m = class_metrics(pred, y[ev], n_classes, positive)
            rows.append({"run_id": run_id, "variant": name, "prompt": prompt, "method": method, "split": "eval",
                         "acc": m["acc"], "bal_acc": m["bal_acc"], "f1": m["f1"], "n": m["n"]})
    table = pa.Table.from_pylist(rows, schema=_ROBUST_SCHEMA)
    return _store_rows(db, "prompt_robustness", table, {"run_id": run_id})


def _first_question(spec, eval_ids: np.ndarray) -> str:
    from .datasets import load_dataset

    if not len(eval_ids):
        return ""
    ds = load_dataset(spec)
    return next((s.question for s in ds.samples if s.id == eval_ids[0]), "")


_ROBUST_SCHEMA = pa.schema([("run_id", pa.string()), ("variant", pa.string()), ("prompt", pa.string()),
                            ("method", pa.string()), ("split", pa.string()), ("acc", pa.float32()),
                            ("bal_acc", pa.float32()), ("f1", pa.float32()), ("n", pa.int32())])


def prompt_robustness_rows(db, run_id: str) -> pa.Table:
    """The prompt-robustness rows recorded for a run."""
    return _select(db, "SELECT * FROM prompt_robustness WHERE run_id = ? "
                   "ORDER BY variant <> 'original', variant, method", [run_id])


# --- distribution shift -------------------------------------------------------------------------------------------
def _check_target(run: dict, target: StoreReader, path: str, neurons: list[Neuron]) -> None:
    classes = target.classes
    if classes != list(run["classes"]):
        raise SnError(f"store {path}: classes {classes} differ from run {run['run_id']}'s {list(run['classes'])}")
    config = target.attrs.model.config_hash if target.attrs.model else None
    if config and run["model_config_hash"] and config != run["model_config_hash"]:
        raise SnError(f"store {path}: extracted from another model (config hash {config}, the run's "
                      f"{run['model_config_hash']})")
    layers, sites = set(target.layers), set(target.sites)
    for n in neurons:
        if n.layer not in layers or n.site not in sites:
            raise SnError(f"store {path}: has no {n.site} layer {n.layer}, which the run's neuron "
                          f"{n.site}:{n.layer}:{n.index} needs")


def transfer(db, run_id: str, store: str) -> pa.Table:
    """The run's best SN and ensemble (chosen on its own probe split), and the base model, evaluated on another
    store with the same classes, per split of that store and over all of it. Stored as `transfers`."""
    run, group = _open_run(db, run_id)
    target = StoreReader(store)
    k = run["ensemble_k"] or 5
    chosen = {m: _run_neurons(db, run, group, n)[0] for m, n in (("sn", 1), ("sn_ensemble", k))}
    _check_target(run, target, store, chosen["sn_ensemble"])
    y, split = _labels(target)
    n_classes, allowed = len(run["classes"]), target.class_mask
    preds = {m: vote_margins(target.neurons([(n.site, n.layer, n.index) for n in ns]), ns, n_classes, allowed)
             for m, ns in chosen.items()}
    if target.model_pred is not None:
        preds = {"model": target.model_pred, **preds}
    positive, name = group.positive_index, target.attrs.dataset.name if target.attrs.dataset else None
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = [{"run_id": run_id, "target_store": str(store), "target_dataset": name, "method": m, "split": part,
             **class_metrics(p[mask], y[mask], n_classes, positive), "created_at": now}
            for m, p in preds.items() for part, mask in _parts(split)]
    table = pa.Table.from_pylist(rows, schema=_TRANSFER_SCHEMA)
    return _store_rows(db, "transfers", table, {"run_id": run_id, "target_store": str(store)})


def _parts(split: np.ndarray):
    yield from ((s, split == s) for s in SPLITS if (split == s).any())
    yield "all", np.ones(len(split), dtype=bool)


_TRANSFER_SCHEMA = pa.schema([("run_id", pa.string()), ("target_store", pa.string()),
                              ("target_dataset", pa.string()), ("method", pa.string()), ("split", pa.string()),
                              ("acc", pa.float32()), ("bal_acc", pa.float32()), ("f1", pa.float32()),
                              ("mcc", pa.float32()), ("n", pa.int32()), ("created_at", pa.timestamp("us"))])


def transfers(db, run_id: str) -> pa.Table:
    """The transfer rows recorded for a run."""
    return _select(db, "SELECT * FROM transfers WHERE run_id = ? ORDER BY target_store, method, split", [run_id])


def transfer_suite(db, run_ids: list[str]) -> list[str]:
    """Record the built-in shifts (`SUITE_TRANSFERS`) among these runs: each run of a source task evaluated on the
    store of a run of its shifted task by the same model. Returns the source runs that got a transfer."""
    runs = [leaderboard.run_row(db, r) for r in run_ids]
    done = []
    for src in runs:
        targets = [r for r in runs if r["dataset"] == SUITE_TRANSFERS.get(src["dataset"])
                   and r["model_config_hash"] == src["model_config_hash"]]
        for dst in targets[-1:]:
            transfer(db, src["run_id"], dst["store"])
            done.append(src["run_id"])
    return done


@dataclass(frozen=True)
class Figure:
    name: str  # file stem of the PNG
    title: str
    png: Path
    table: pa.Table


# --- plots ----------------------------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def _integer_ticks(*axes) -> None:
    from matplotlib.ticker import MaxNLocator

    for axis in axes:
        axis.set_major_locator(MaxNLocator(integer=True))


def _label(r: dict) -> str:
    return f"{r['site']} L{r['layer']} #{r['neuron']}"


def plot_threshold_curve(table: pa.Table, path) -> Path:
    """Fig. 3a: accuracy against alpha per neuron, probe and eval side by side."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    rows = table.to_pylist()
    for ax, name in zip(axes, SPLITS, strict=True):
        curves: dict[tuple, list] = {}
        for r in rows:
            if r["split"] == name:
                curves.setdefault((r["class"], r["rank"], _label(r)), []).append((r["alpha"], r["acc"]))
        for (cls, rank, label), pts in sorted(curves.items()):
            a, acc = zip(*sorted(pts), strict=True)
            ax.plot(a, acc, label=f"#{rank} {label}" + (f" ({cls})" if len({k[0] for k in curves}) > 1 else ""))
        ax.set(title=f"{name} split", xlabel="threshold alpha", xlim=ALPHA_RANGE)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[1].legend(fontsize=7, loc="best")
    return _save(fig, path)


def plot_layer_counts(table: pa.Table, path) -> Path:
    """Fig. 3b: per layer, neurons beating the base model, one line per site, probe and eval."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    rows = table.to_pylist()
    for ax, name in zip(axes, SPLITS, strict=True):
        for site in sorted({r["site"] for r in rows}):
            pts = sorted((r["layer"], r[f"n_beat_{name}"]) for r in rows if r["site"] == site)
            ax.plot(*zip(*pts, strict=True), marker="o", label=site)
        base = rows[0][f"model_{name}_acc"] if rows else None
        ax.set(title=f"{name}: beat the base model" + (f" ({base:.3f})" if base is not None else ""),
               xlabel="layer")
        _integer_ticks(ax.xaxis, ax.yaxis)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("neurons")
    axes[1].legend()
    return _save(fig, path)


def plot_agreement(table: pa.Table, path) -> Path:
    """Fig. 4: agreement with the base model against eval accuracy, coloured by layer."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    rows = [r for r in table.to_pylist() if r["eval_acc"] is not None and r["agreement"] is not None]
    points = ax.scatter([r["eval_acc"] for r in rows], [r["agreement"] for r in rows],
                        c=[r["layer"] for r in rows], s=10, alpha=0.6, cmap="viridis")
    _integer_ticks(fig.colorbar(points, ax=ax, label="layer").ax.yaxis)
    base = rows[0]["model_eval_acc"] if rows else None
    if base is not None:
        ax.axvline(base, color="k", linestyle="--", label=f"base model ({base:.3f})")
        ax.legend(loc="lower right")
    ax.set(xlabel="SN eval accuracy", ylabel="agreement with the base model", title=f"top {len(rows)} neurons")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_probe_size(table: pa.Table, path) -> Path:
    """Fig. 5: eval accuracy, precision, recall and F1 of the re-selected best SN against the probe size (mean
    over seeds, band = min..max), the base model dashed."""
    plt = _pyplot()
    rows = table.to_pylist()
    metrics = ("acc", "precision", "recall", "f1")
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.5), sharey=True)
    sizes = sorted({r["size"] for r in rows if r["method"] == "sn"})
    base = next((r for r in rows if r["method"] == "model"), None)
    for ax, m in zip(axes, metrics, strict=True):
        vals = [[r[m] for r in rows if r["method"] == "sn" and r["size"] == s] for s in sizes]
        ax.plot(sizes, [np.mean(v) for v in vals], marker="o", label="best SN")
        ax.fill_between(sizes, [min(v) for v in vals], [max(v) for v in vals], alpha=0.25)
        if base is not None:
            ax.axhline(base[m], color="k", linestyle="--", label="base model")
        ax.set(title=m, xlabel="probe samples")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("eval")
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def _bars(ax, groups: list[str], series: dict[str, list[float]]) -> None:
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        ax.bar(np.arange(len(groups)) + i * width, values, width, label=name)
    ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, groups)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)


def plot_prompt_robustness(table: pa.Table, path) -> Path:
    """Eval accuracy of the best SN and the ensemble per prompt variant."""
    plt = _pyplot()
    rows = table.to_pylist()
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    acc = {(r["variant"], r["method"]): r["acc"] for r in rows}
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(variants)), 3.8))
    _bars(ax, variants, {m: [acc.get((v, m), np.nan) for v in variants] for m in ("sn", "sn_ensemble")})
    ax.set(ylabel="eval accuracy", title="reworded prompts")
    return _save(fig, path)


def plot_transfer(table: pa.Table, path, source: dict[str, float] | None = None) -> Path:
    """Accuracy on each target store (split `all`) per method; `source` (method -> eval accuracy on the run's own
    dataset) adds the run's own figures as the first group."""
    plt = _pyplot()
    rows = [r for r in table.to_pylist() if r["split"] == "all"]
    targets = list(dict.fromkeys(r["target_dataset"] or r["target_store"] for r in rows))
    acc = {(r["target_dataset"] or r["target_store"], r["method"]): r["acc"] for r in rows}
    methods = list(dict.fromkeys(r["method"] for r in rows))
    groups = (["own eval split"] if source else []) + targets
    series = {m: ([source.get(m, np.nan)] if source else []) + [acc.get((t, m), np.nan) for t in targets]
              for m in methods}
    fig, ax = plt.subplots(figsize=(max(5, 2.2 * len(groups)), 3.8))
    _bars(ax, groups, series)
    ax.set(ylabel="accuracy", title="distribution shift")
    return _save(fig, path)


# --- for the report -------------------------------------------------------------------------------------------------
def write_figures(db, run_id: str, out_dir) -> list[Figure]:
    """Every analysis that applies to the run, drawn as `out_dir/<name>.png`. The cheap ones are computed; the
    probe-size curve and prompt robustness are read when recorded, else computed (prompts: when the spec has
    variants); transfers are read (`sn transfer` records them). Without the run's store: what SQL alone gives."""
    out, figs = Path(out_dir), []
    has_store = zstore.open_group(leaderboard.run_row(db, run_id)["store"]) is not None  # else: SQL-only figures

    def add(name: str, title: str, table: pa.Table, plot, **kw) -> None:
        if table.num_rows:
            figs.append(Figure(name, title, plot(table, out / f"{name}.png", **kw), table))

    if has_store:
        add("threshold_curve", "Accuracy against the threshold alpha", threshold_curve(db, run_id),
            plot_threshold_curve)
    add("layer_counts", "Neurons that beat the base model, per layer", layer_counts(db, run_id), plot_layer_counts)
    agreement = agreement_vs_accuracy(db, run_id)
    if agreement.num_rows and agreement["model_eval_acc"][0].as_py() is not None:
        add("agreement", "Agreement with the base model against accuracy", agreement, plot_agreement)
    sizes = _select(db, "SELECT * FROM probe_size_curves WHERE run_id = ? ORDER BY method, size, seed", [run_id])
    if has_store and not sizes.num_rows:  # many searches: computed once, then read
        sizes = probe_size_curve(db, run_id)
    add("probe_size", "Probe-set size against eval figures", sizes, plot_probe_size)
    robust = _robustness_for_report(db, run_id) if has_store else prompt_robustness_rows(db, run_id)
    add("prompt_robustness", "Reworded prompts", robust, plot_prompt_robustness)
    own = {r["method"]: r["acc"] for r in leaderboard.run_evaluations(db, run_id) if r["split"] == "eval"}
    add("transfer", "Distribution shift", transfers(db, run_id), plot_transfer, source=own)
    return figs


def _robustness_for_report(db, run_id: str) -> pa.Table:
    recorded = prompt_robustness_rows(db, run_id)
    if recorded.num_rows:
        return recorded
    run, group = _open_run(db, run_id)
    try:
        wanted = _variants(_spec_of(run, group), None)
    except SnError:  # a store written by another program may record no spec
        return recorded
    return prompt_robustness(db, run_id) if wanted else recorded
