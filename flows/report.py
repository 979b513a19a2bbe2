"""The `report` flow: write a run's report (`sn_store.report.write_report`) and publish it as Prefect artifacts, a
link to the page and the results table. The probe flow ends with the same task."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.cache_policies import NONE

from sn_store import leaderboard
from sn_store.pipeline import artifact_key
from sn_store.report import results_table, write_report


@task(name="report", cache_policy=NONE)
def report_task(run_id: str | None, out: str | None = None, db: str | None = None) -> str:
    run = leaderboard.run_row(db, run_id)  # default: the latest
    page = write_report(run["run_id"], out, db=db).resolve()
    what = f"{run['model']} on {run['dataset']} (run {run['run_id']})"
    create_link_artifact(page.as_uri(), link_text=f"report: {what}", key=artifact_key("report", run["model"],
                         run["dataset"]), description=f"{page} (open it in a browser; it reads offline)")
    create_table_artifact(results_table(db, run["run_id"]), key=artifact_key("results", run["model"], run["dataset"]),
                          description=f"{what}: base model, SAV, best SN, ensemble, early exit (probe / eval)")
    return str(page)


@flow(name="report", log_prints=True)
def report_flow(run_id: str | None = None, out: str | None = None, db: str | None = None) -> str:
    """Write the report of a run (default: the latest; default folder `$SN_HOME/reports/<run>`); returns the path of
    its index.html."""
    return report_task(run_id, out, db)


if __name__ == "__main__":
    report_flow()
