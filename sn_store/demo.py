"""`sn demo`: the probe DAG on the embedded default model for every task of the built-in suite, as one table."""

from __future__ import annotations

import json

from . import leaderboard
from .datasets import suite_specs
from .pipeline import DEFAULT_MODEL, ProbeConfig


def summary_sql(run_ids: list[str]) -> str:
    ids = ", ".join(f"'{r}'" for r in run_ids)
    return ("SELECT task, base_model_acc, best_sn_acc, best_sn, ensemble_acc, early_exit_acc, exit_layer, speedup "
            f"FROM probe_summary WHERE run_id IN ({ids}) ORDER BY task")


def describe_neurons(detail: str | None) -> str:
    """'mlp L1 #42' for one neuron, '4 neurons, L0-2' for several."""
    neurons = json.loads(detail) if detail else []
    if len(neurons) == 1:
        n = neurons[0]
        return f"{n['site']} L{n['layer']} #{n['neuron']}"
    layers = sorted({n["layer"] for n in neurons})
    span = f"L{layers[0]}" if len(layers) == 1 else f"L{layers[0]}-{layers[-1]}"
    return f"{len(neurons)} neurons, {span}" if neurons else "-"


def run_demo(model: str = DEFAULT_MODEL, tasks: list[str] | None = None, db: str | None = None) -> list[dict]:
    """Probe every task (default: the synthetic suite) through the Prefect flow; returns the summary rows."""
    from .flows.probe import probe

    run_ids = [probe(ProbeConfig(model=model, dataset=task, db=db))["run_id"]
               for task in (tasks or sorted(suite_specs()))]
    rows = leaderboard.query(db, summary_sql(run_ids)).to_pylist()
    return [dict(r, best_sn=describe_neurons(r["best_sn"])) for r in rows], run_ids
