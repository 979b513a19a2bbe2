"""Deployments of every flow, served by one process (`sn serve`) so the Prefect UI can start each from its Run form."""

from __future__ import annotations

import os

from sn_store.flows.export import export_flow
from sn_store.flows.extract import extract_flow
from sn_store.flows.probe import probe
from sn_store.flows.report import report_flow
from sn_store.flows.reprobe import reprobe
from sn_store.flows.search import search_flow

DEFAULT_CRON = "0 3 * * *"  # re-probe daily at 03:00


def deployments(cron: str | None = None) -> list:
    """The deployments `sn serve` registers; `reprobe` carries the cron schedule (env SN_REPROBE_CRON overrides)."""
    cron = cron or os.environ.get("SN_REPROBE_CRON") or DEFAULT_CRON
    return [
        probe.to_deployment("probe", description="extract -> search -> export -> evaluate -> report"),
        extract_flow.to_deployment("extract"),
        search_flow.to_deployment("search"),
        export_flow.to_deployment("export"),
        report_flow.to_deployment("report", description="write a run's report (default: the latest run)"),
        reprobe.to_deployment("reprobe", cron=cron, description="probe new or changed registered datasets"),
    ]


def serve_all(cron: str | None = None, ephemeral: bool = False) -> None:
    """Serve every deployment against the Prefect server of PREFECT_API_URL (environment or profile). Without one,
    Prefect would start a throwaway server inside this process that no UI or worker can reach: refused unless
    `ephemeral`, and then said loudly."""
    import sys

    from prefect import serve
    from prefect.settings import get_current_settings

    from sn_store.errors import SnError

    if not get_current_settings().api.url:
        if not ephemeral:
            raise SnError("PREFECT_API_URL is not set: `sn serve` would serve a throwaway server that no UI can reach. "
                          "Start one (infra/stack.sh start, or `prefect server start --host 127.0.0.1`), then "
                          "export PREFECT_API_URL=http://127.0.0.1:4200/api; or pass --ephemeral to serve anyway")
        print("warning: PREFECT_API_URL is not set: serving a throwaway Prefect server inside this process; no UI "
              "or worker can reach it, and it goes away with it", file=sys.stderr, flush=True)
    serve(*deployments(cron))
