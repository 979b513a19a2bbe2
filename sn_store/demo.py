"""`sn demo`: the probe DAG on the embedded default model for every task of the built-in suite, as one table."""

from __future__ import annotations

import json

from . import leaderboard
from .pipeline import DEFAULT_MODEL

SUITE_COLUMNS = ("task", "base_model_acc", "best_sn_acc", "best_sn", "ensemble_acc", "early_exit_acc", "exit_layer",
                 "speedup", "speedup_q1", "speedup_q3")


def summary_sql(run_ids: list[str]) -> str:
    ids = ", ".join(f"'{r}'" for r in run_ids)
    return f"SELECT {', '.join(SUITE_COLUMNS)} FROM probe_summary WHERE run_id IN ({ids}) ORDER BY task"


def describe_neurons(detail: str | None) -> str:
    """'mlp L1 #42' for one neuron, '4 neurons, L0-2' for several."""
    neurons = json.loads(detail) if detail else []
    if len(neurons) == 1:
        n = neurons[0]
        return f"{n['site']} L{n['layer']} #{n['neuron']}"
    layers = sorted({n["layer"] for n in neurons})
    span = f"L{layers[0]}" if len(layers) == 1 else f"L{layers[0]}-{layers[-1]}"
    return f"{len(neurons)} neurons, {span}" if neurons else "-"


def suite_rows(db: str | None, run_ids: list[str]) -> list[dict]:
    """One row per run of the `probe_summary` view (the table of `sn demo` and of the suite artifacts), the best SN
    named and the speed-up given with its spread."""
    if not run_ids:
        return []
    rows = leaderboard.query(db, summary_sql(run_ids)).to_pylist()
    return [{**{k: r[k] for k in SUITE_COLUMNS[:-3]}, "best_sn": describe_neurons(r["best_sn"]),
             "speedup": leaderboard.speedup_text(r["speedup"], r["speedup_q1"], r["speedup_q3"])} for r in rows]


def run_demo(model: str = DEFAULT_MODEL, tasks: list[str] | None = None, db: str | None = None):
    """Probe every task (default: the synthetic suite) through the Prefect flow `demo`; returns (rows, run ids)."""
    from .flows.demo import demo

    run_ids = demo(model, tasks, db)
    return suite_rows(db, run_ids), run_ids
