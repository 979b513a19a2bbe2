"""The `reprobe` flow: probe every registered dataset that has no finished probe for the model, its content and
the default probe settings; leave the rest alone. Its deployment runs on a cron schedule.

Each run publishes a markdown summary (`reprobe-summary-<model>`: each dataset probed, skipped or failed, and why)
and the suite table (`reprobe-suite-<model>`: the latest probe of every registered dataset)."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from sn_store.flows.demo import publish_suite
from sn_store.flows.probe import probe

from sn_store.errors import SnError
from sn_store.pipeline import DEFAULT_MODEL, ProbeConfig, artifact_key, dataset_for, finished_probes, probe_status
from sn_store.registry import registered_specs


@flow(name="reprobe", log_prints=True)
def reprobe(models: list[str] = [DEFAULT_MODEL], db: str | None = None) -> list[str]:  # noqa: B006 (UI default)
    """Probe the registered datasets that are new or changed, for each model; returns 'model/dataset' probed.
    A dataset that fails is reported and the others still run; the flow run then fails, naming it."""
    log = get_run_logger()
    probed, failed = [], []
    for model in models:
        outcomes, run_ids = [], []
        for name in registered_specs():
            config = ProbeConfig(model=model, dataset=name, db=db)
            action, why, run_id = probe_one(config)
            log.info("%s on %s: %s (%s)", model, name, action, why)
            outcomes.append((name, action, why))
            probed += [f"{model}/{name}"] if action == "probed" else []
            failed += [f"{model}/{name}: {why}"] if action == "failed" else []
            run_ids += [run_id] if run_id else []
        create_markdown_artifact(outcome_markdown(model, outcomes), key=artifact_key("reprobe-summary", model),
                                 description=f"reprobe of {model}: probed {sum(o[1] == 'probed' for o in outcomes)}"
                                             f" of {len(outcomes)}")
        publish_suite("reprobe-suite", model, db, run_ids)
    if failed:
        raise SnError(f"reprobe: {len(failed)} probe(s) failed: " + "; ".join(failed))
    return probed


def probe_one(config: ProbeConfig) -> tuple[str, str, str | None]:
    """(probed | skipped | failed, why, the run id of its finished probe or None)."""
    try:
        ds = dataset_for(config)
    except SnError as exc:
        return "failed", f"cannot read the dataset: {exc}", None
    needed, why = probe_status(config, ds)
    if needed:
        state = probe(config, return_state=True)
        if not state.is_completed():
            return "failed", f"{why}; the probe failed: {state.message}", None
    done = finished_probes(config, ds)
    return ("probed" if needed else "skipped"), why, done[0]["run_id"] if done else None


def outcome_markdown(model: str, outcomes: list[tuple[str, str, str]]) -> str:
    lines = [f"# Re-probe of `{model}`", "", "| dataset | action | why |", "|---|---|---|"]
    lines += [f"| {name} | {action} | {why.replace('|', '/')} |" for name, action, why in outcomes]
    return "\n".join(lines + ["", "Up to date: a finished probe of this model, dataset content and probe settings "
                                  "exists (DuckDB table `probes`)."])


if __name__ == "__main__":
    reprobe()
