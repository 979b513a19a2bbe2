"""The probe pipeline's configuration and the library steps its Prefect flow strings together:
extract -> search -> export -> evaluate. Each step skips work a previous (failed or finished) run already did."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from . import leaderboard
from .datasets import Dataset, load_dataset, resolve_spec
from .extract import default_store_path
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
    dask_address: str | None = Field(None, description="dask.distributed scheduler; empty: local threads")
    db: str | None = Field(None, description="DuckDB file; empty: $SN_HOME/sn.duckdb")


def dataset_for(config: ProbeConfig) -> Dataset:
    spec = resolve_spec(config.dataset, config.source)
    sizes = {k: v for k, v in (("probe_size", config.probe_size), ("eval_size", config.eval_size)) if v is not None}
    return load_dataset(spec.model_copy(update=sizes) if sizes else spec)


def store_for(config: ProbeConfig, ds: Dataset) -> str:
    """One store per model, dataset content and extraction settings: probes with other settings, or of a dataset
    whose files changed, never collide with an earlier store."""
    settings = json.dumps([config.sites, config.layers, config.probe_size, config.eval_size, ds.content_hash])
    return default_store_path(config.model, f"{ds.spec.name}-{hashlib.sha256(settings.encode()).hexdigest()[:8]}")


def finished_search(store: str, config: ProbeConfig) -> str | None:
    """The run id of an earlier search of this very store with these settings, if any."""
    fingerprint = StoreReader(store).attrs.fingerprint
    return leaderboard.find_run(config.db, fingerprint, config.mode, config.ensemble_k) if fingerprint else None


def top_rows(config: ProbeConfig, run_id: str, k: int = 10) -> list[dict]:
    cols = ("rank", "class", "site", "layer", "neuron", "probe_acc", "eval_acc", "eval_bal_acc", "agreement")
    rows = leaderboard.top(config.db, run_id, k).to_pylist()
    return [{c: (round(r[c], 4) if isinstance(r[c], float) else r[c]) for c in cols} for r in rows]


def eval_figures(config: ProbeConfig, run_id: str) -> dict[str, float]:
    """Held-out accuracy per method (model, sn, sn_ensemble, early_exit: the latest of each)."""
    rows = leaderboard.run_evaluations(config.db, run_id)
    return {r["method"]: r["acc"] for r in rows if r["split"] == "eval"}


def eval_samples(store: str, ds: Dataset, n: int = 8) -> tuple[list, list[str]]:
    picked = [ds.samples[i] for i in np.flatnonzero(StoreReader(store).split == "eval")[:n]]
    return [s.load_image() for s in picked], [s.question for s in picked]


def summary_markdown(config: ProbeConfig, run_id: str, store: str, artifact: Path, exit_layer: int,
                     speed: dict, best: dict) -> str:
    acc = eval_figures(config, run_id)

    def fmt(method: str) -> str:
        return f"{acc[method]:.3f}" if method in acc and acc[method] is not None else "n/a"

    db = config.db or str(leaderboard.default_db_path())
    return "\n".join([
        f"# Probe of `{config.model}` on `{config.dataset}` (run `{run_id}`)",
        "",
        "| method | eval accuracy |",
        "|---|---|",
        f"| base model (its own answer) | {fmt('model')} |",
        f"| best SN ({best['site']} layer {best['layer']} #{best['neuron']}) | {fmt('sn')} |",
        f"| top-{config.ensemble_k} SN ensemble | {fmt('sn_ensemble')} |",
        f"| early-exit artifact | {fmt('early_exit')} |",
        "",
        f"Early exit after decoder layer {exit_layer}: {speed['speedup']:.2f}x faster than `generate` "
        f"({speed['early_exit_s'] * 1e3:.1f} ms vs {speed['full_s'] * 1e3:.1f} ms per batch of {speed['batch']}).",
        "",
        f"- store: `{store}`",
        f"- database: `{db}` (try `sn top --run {run_id}`)",
        f"- artifact: `{artifact}` (try `sn predict {artifact} --dataset {config.dataset}`)",
    ])
