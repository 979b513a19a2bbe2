"""The probe pipeline's configuration and the library steps its Prefect flow strings together:
extract -> search -> export -> evaluate. Each step skips work a previous (failed or finished) run already did."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from . import checks, leaderboard
from .datasets import Dataset, load_dataset, resolve_spec
from .store import StoreReader

DEFAULT_MODEL = "sn-tiny-llava"  # the trained tiny LLaVA shipped in the package


class ProbeConfig(BaseModel):
    """What to probe and how. Every field has a default, so the Prefect UI's Quick run works as it is."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(DEFAULT_MODEL, description="HF hub id, local model directory, or a built-in name")
    dataset: str = Field("shapes-exist", description="Dataset spec file, or a built-in or registered name")
    source: str | None = Field(None, description="A local copy (path) or hub id of the dataset's data; empty: the "
                               "spec's own source")
    sites: list[Literal["resid", "mlp", "attn"]] = Field(["resid", "mlp", "attn"], min_length=1)
    layers: str | None = Field(None, description="Decoder layers, e.g. '0,2,5-7'; empty: all")
    batch_size: int = Field(16, ge=1)
    probe_size: int | None = Field(None, ge=1, description="Override the spec's probe split size")
    eval_size: int | None = Field(None, ge=0, description="Override the spec's eval split size")
    mode: Literal["exact", "grid"] = "exact"
    ensemble_k: int = Field(5, ge=1, description="Neurons per class in the majority-vote ensemble")
    export_ensemble: int = Field(1, ge=1, description="Neurons per class in the exported early-exit artifact")
    speedup_repeats: int = Field(7, ge=1, description="Interleaved timings of the early exit against `generate` "
                                 "(fewer: a quicker, noisier speed-up)")
    dask_address: str | None = Field(None, description="dask.distributed scheduler; empty: local threads")
    db: str | None = Field(None, description="DuckDB file; empty: $SN_HOME/sn.duckdb")

    @field_validator("layers")
    @classmethod
    def _layers_read(cls, layers: str | None) -> str | None:
        return layers if layers is None else checks.layers(layers)


# What makes two probes of one model, dataset name and content the same probe: everything but where and how fast.
RESULT_SETTINGS = ("sites", "layers", "probe_size", "eval_size", "mode", "ensemble_k", "export_ensemble")


def probe_settings(config: ProbeConfig) -> str:
    """The settings part of a probe's key (canonical JSON)."""
    return json.dumps({k: getattr(config, k) for k in RESULT_SETTINGS}, sort_keys=True)


def probe_key(config: ProbeConfig, ds: Dataset) -> dict:
    """The key of a finished probe (DuckDB `probes`): model, dataset name, dataset content, settings."""
    return {"model": config.model, "dataset": ds.spec.name, "content_hash": ds.content_hash,
            "settings": probe_settings(config)}


def finished_probes(config: ProbeConfig, ds: Dataset) -> list[dict]:
    """The recorded probes with exactly this key, the latest first."""
    key = probe_key(config, ds)
    return [p for p in leaderboard.probes_of(config.db, config.model, ds.spec.name)
            if p["content_hash"] == key["content_hash"] and p["settings"] == key["settings"]]


def probe_status(config: ProbeConfig, ds: Dataset) -> tuple[bool, str]:
    """(needs a probe, why): up to date means a finished probe of this model, dataset name, content and settings."""
    same = finished_probes(config, ds)
    if same:
        return False, f"up to date: probed as run {same[0]['run_id']} on {same[0]['finished_at']:%Y-%m-%d %H:%M} UTC"
    earlier = leaderboard.probes_of(config.db, config.model, ds.spec.name)
    if not earlier:
        return True, "never probed"
    if any(p["settings"] == probe_settings(config) for p in earlier):
        return True, f"content changed (now {ds.content_hash}, last probed {earlier[0]['content_hash']})"
    return True, "probed before with other settings only"


def dataset_for(config: ProbeConfig) -> Dataset:
    return load_dataset(resolve_spec(config.dataset, config.source).with_sizes(config.probe_size, config.eval_size))


def finished_search(store: str, config: ProbeConfig) -> str | None:
    """The run id of an earlier search of this very store with these settings, if any."""
    from .search import finished_run

    return finished_run(store, config.mode, config.ensemble_k, config.db)


def top_rows(config: ProbeConfig, run_id: str, k: int = 10) -> list[dict]:
    cols = ("rank", "class", "site", "layer", "neuron", "probe_acc", "eval_acc", "eval_bal_acc", "agreement")
    rows = leaderboard.top(config.db, run_id, k).to_pylist()
    return [{c: (round(r[c], 4) if isinstance(r[c], float) else r[c]) for c in cols} for r in rows]


def eval_figures(config: ProbeConfig, run_id: str, artifact: str | Path) -> dict[str, float]:
    """Held-out accuracy per method (model, sn, sn_ensemble; early_exit: that of `artifact`)."""
    own = leaderboard.artifact_id(run_id, artifact)
    rows = leaderboard.run_evaluations(config.db, run_id)
    return {r["method"]: r["acc"] for r in rows
            if r["split"] == "eval" and (r["method"] != "early_exit" or r["artifact_id"] == own)}


def eval_samples(store: str, ds: Dataset, n: int = 8) -> tuple[list, list[str]]:
    picked = [ds.samples[i] for i in np.flatnonzero(StoreReader(store).split == "eval")[:n]]
    return [s.load_images() for s in picked], [s.question for s in picked]


def artifact_key(kind: str, model: str, dataset: str | None = None) -> str:
    """A Prefect artifact key naming the model (and dataset): keys allow lowercase letters, digits and dashes."""
    parts = [kind, Path(model).name or model, *([dataset] if dataset else [])]
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


def neuron_text(row: dict) -> str:
    return f"{row['site']} layer {row['layer']} #{row['neuron']}"


def summary_markdown(config: ProbeConfig, run_id: str, store: str, artifact: Path, exit_layer: int,
                     speed: dict, best: list[dict]) -> str:
    """`best`: the rank-1 neuron of each class (one row for a binary run, one per class for K > 2)."""
    acc = eval_figures(config, run_id, artifact)

    def fmt(method: str) -> str:
        return f"{acc[method]:.3f}" if method in acc and acc[method] is not None else "n/a"

    if len(best) == 1:
        best_sn = f"best SN ({neuron_text(best[0])})"
    else:
        best_sn = "best SN per class (" + "; ".join(f"{r['class']}: {neuron_text(r)}" for r in best) + ")"
    db = config.db or str(leaderboard.default_db_path())
    return "\n".join([
        f"# Probe of `{config.model}` on `{config.dataset}` (run `{run_id}`)",
        "",
        "| method | eval accuracy |",
        "|---|---|",
        f"| base model (its own answer) | {fmt('model')} |",
        f"| {best_sn} | {fmt('sn')} |",
        f"| top-{config.ensemble_k} SN ensemble | {fmt('sn_ensemble')} |",
        f"| early-exit artifact | {fmt('early_exit')} |",
        "",
        f"Early exit after decoder layer {exit_layer}: "
        f"{leaderboard.speedup_text(speed['speedup'], speed['speedup_q1'], speed['speedup_q3'])} faster than "
        "`generate` "
        f"(median and interquartile range of {speed['repeats']} interleaved timings; median "
        f"{speed['early_exit_s'] * 1e3:.1f} ms vs {speed['full_s'] * 1e3:.1f} ms per batch of {speed['batch']}).",
        "",
        f"- store: `{store}`",
        f"- database: `{db}` (try `sn top --run {run_id}`)",
        f"- artifact: `{artifact}` (try `sn predict {artifact} --dataset {config.dataset}`)",
    ])
