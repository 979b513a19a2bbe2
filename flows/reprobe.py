"""The `reprobe` flow: probe every registered dataset that a model has no leaderboard for yet, or whose content
changed since its last run; leave the rest alone. Its deployment runs on a cron schedule."""

from __future__ import annotations

from prefect import flow, get_run_logger
from sn_store.flows.probe import probe

from sn_store.pipeline import DEFAULT_MODEL, ProbeConfig
from sn_store.registry import current_hash, needs_probe, registered_specs


@flow(name="reprobe", log_prints=True)
def reprobe(models: list[str] = [DEFAULT_MODEL], db: str | None = None) -> list[str]:  # noqa: B006 (UI default)
    """Probe the registered datasets that are new or changed, for each model; returns 'model/dataset' probed."""
    log = get_run_logger()
    probed = []
    for model in models:
        for name in registered_specs():
            if needs_probe(db, model, name, current_hash(name)):
                log.info("probing %s on %s (new or changed)", model, name)
                probe(ProbeConfig(model=model, dataset=name, db=db))
                probed.append(f"{model}/{name}")
            else:
                log.info("%s on %s is up to date", model, name)
    return probed


if __name__ == "__main__":
    reprobe()
