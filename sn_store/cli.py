"""The `sn` command line. Each command is a thin wrapper over the library function of the same name."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .errors import SnError

SITES_ALL = ("resid", "mlp", "attn")

app = typer.Typer(
    help="Find Super Neurons in vision-language models and turn them into early-exit classifiers.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
)
datasets_app = typer.Typer(help="Dataset specs: built-in and registered.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
# Piped output (CI, files) gets a wide fixed width instead of rich's 80 columns, so tables keep their headers.
console = Console(width=None if sys.stdout.isatty() else 160)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="HF hub id, local model directory, or a built-in "
                                       "name (sn-tiny-llava: trained; tiny-llava, tiny-qwen2-vl, tiny-idefics3: "
                                       "random weights).")]
DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="A dataset spec file (YAML) or a built-in or "
                                         "registered name (see `sn datasets list`).")]
SourceOpt = Annotated[str | None, typer.Option("--source", help="Where the dataset's data is, instead of the spec's "
                                               "source: a local copy (a folder in the hub's layout, a save_to_disk "
                                               "folder, the original release's files) or a hub id.")]


@app.command()
def extract(
    model: ModelOpt,
    dataset: DatasetOpt,
    sites: Annotated[str | None, typer.Option(help="Comma-separated sites: resid, mlp, attn. Default: all.")] = None,
    layers: Annotated[str | None, typer.Option(help="Decoder layers, e.g. '0,2,5-7'. Default: all.")] = None,
    batch_size: Annotated[int, typer.Option(help="Samples per forward pass.")] = 16,
    store: Annotated[str | None, typer.Option(help="Store path or fsspec URL. Default: $SN_HOME/stores/"
                                                 "<model>__<dataset>-<fingerprint>.zarr, as sn probe")] = None,
    dtype: Annotated[str, typer.Option(help="Stored activation dtype: float16 or float32.")] = "float16",
    baseline: Annotated[bool, typer.Option(help="Also record the base model's own answer (needs the full "
                                           "forward pass; --no-baseline stops after the deepest layer).")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace a store made with other arguments.")] = False,
    device: Annotated[str | None, typer.Option(help="torch device. Default: cuda if available, else cpu.")] = None,
    model_dtype: Annotated[str | None, typer.Option(help="Weights dtype (float32, bfloat16, float16). Default: "
                                                       "bfloat16 on CUDA, float32 on CPU.")] = None,
    source: SourceOpt = None,
) -> None:
    """Record the chosen sites of the chosen layers at the first generated token into a Zarr store.

    A run that was cut short resumes from its last complete chunk when started again with the same arguments.
    """
    from .datasets import resolve_spec
    from .extract import extract as run

    path = run(model, resolve_spec(dataset, source), store=store, sites=sites, layers=layers, batch_size=batch_size,
               baseline=baseline, dtype=dtype, overwrite=overwrite, device=device, model_dtype=model_dtype)
    _describe_store(path)


@app.command()
def demo(
    model: Annotated[str | None, typer.Option(help="Model to probe. Default: the shipped trained tiny VLM.")] = None,
    task: Annotated[list[str] | None, typer.Option(help="Task (dataset) to probe; repeat. Default: the whole "
                                                      "built-in suite.")] = None,
    db: DbOpt = None,
) -> None:
    """Probe the embedded default model on every task of the synthetic suite, through Prefect, and print one table.

    A second run reuses the stores and searches of the first.
    """
    from .demo import run_demo, summary_sql
    from .pipeline import DEFAULT_MODEL

    model = model or DEFAULT_MODEL
    console.print(f"[bold]sn demo[/]: probing [cyan]{model}[/] on {', '.join(task) if task else 'the built-in suite'}")
    rows, run_ids = run_demo(model, task, db)
    table = Table(title=f"{model}: held-out (eval) accuracy per task")
    for col in ("task", "base model", "best SN", "best SN neuron", "top-k ensemble", "early exit", "exit layer",
                "speed-up (IQR)"):
        table.add_column(col, justify="left" if col in ("task", "best SN neuron") else "right")
    for r in rows:
        table.add_row(r["task"], _pct(r["base_model_acc"]), _pct(r["best_sn_acc"]), r["best_sn"],
                      _pct(r["ensemble_acc"]), _pct(r["early_exit_acc"]), str(r["exit_layer"]),
                      r["speedup"])
    console.print(table)
    console.print("Reproduce this table:  sn sql \"" + summary_sql(run_ids) + "\"", soft_wrap=True, highlight=False)
    console.print("Look closer:           sn top --run " + run_ids[0] + "   |   sn predict <artifact> --dataset <task>",
                  highlight=False)
    console.print("Prefect UI:            infra/stack.sh start, then open http://127.0.0.1:4200 (see README)",
                  highlight=False)
    from .report import write_suite_report

    console.print(f"Report:                {write_suite_report(run_ids, db=db)}", soft_wrap=True, highlight=False)


def _pct(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _describe_store(path: str) -> None:
    from .store import open_store

    ds = open_store(path)
    acts = ds["activations"]
    table = Table(title=f"store {path}")
    table.add_column("what")
    table.add_column("value")
    split = ds["split"].values.astype(object)
    table.add_row("activations", f"{acts.sizes['sample']} samples x {acts.sizes['layer']} layers x "
                  f"{acts.sizes['neuron']} neurons ({acts.dtype})")
    table.add_row("sites", ", ".join(ds.attrs["sites"]))
    table.add_row("layers", ", ".join(map(str, ds.attrs["layers"])))
    table.add_row("split", f"{(split == 'probe').sum()} probe / {(split == 'eval').sum()} eval")
    table.add_row("classes", ", ".join(ds.attrs["classes"]))
    pred = ds["model_pred"].values
    if (pred >= 0).all():
        ev = split == "eval"
        acc = (pred[ev] == ds["label"].values[ev]).mean()
        table.add_row("base model eval accuracy", f"{acc:.3f}")
    console.print(table)


DbOpt = Annotated[str | None, typer.Option("--db", help="DuckDB file. Default: $SN_HOME/sn.duckdb.")]


@app.command()
def search(
    store: Annotated[str, typer.Option(help="Activation store written by `sn extract` (path or fsspec URL).")],
    mode: Annotated[str, typer.Option(help="exact: every cut between distinct probe values; grid: the paper's "
                                      "fixed thresholds over [-3, 3].")] = "exact",
    n_grid: Annotated[int, typer.Option(help="Grid points in grid mode.")] = 61,
    dask_address: Annotated[str | None, typer.Option(envvar="SN_DASK_ADDRESS", help="A dask.distributed "
                                                        "scheduler (tcp://host:port). Default: local threads.")] = None,
    ensemble_k: Annotated[int, typer.Option(help="Neurons (per class) in the majority-vote ensemble.")] = 5,
    sav: Annotated[bool | None, typer.Option("--sav/--no-sav", help="The SAV baseline (attention heads). Default: "
                                             "when the store has the attn site and attn_heads.")] = None,
    sav_heads: Annotated[int, typer.Option(help="Attention heads voting in the SAV baseline.")] = 20,
    again: Annotated[bool, typer.Option("--again", help="Search anew even if these very store contents were "
                                        "searched with the same settings (default: reuse that run).")] = False,
    db: DbOpt = None,
) -> None:
    """Fit a threshold classifier to every neuron of a store and write the leaderboard to DuckDB.

    Prints the run id on stdout (the evaluation summary goes to stderr), so `RUN=$(sn search --store S)` works.
    An unchanged store searched again with the same settings gives the earlier run back (`--again` to repeat it).
    """
    from .leaderboard import query
    from .search import finished_run
    from .search import search as run

    err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
    done = None if again else finished_run(store, mode, ensemble_k, db, n_grid)
    if done:
        err.print(f"store {store} was searched with these settings already: run {done} (pass --again to search "
                  "it anew)", highlight=False, soft_wrap=True)
    run_id = done or run(store, mode, n_grid=n_grid, dask_address=dask_address, ensemble_k=ensemble_k, db=db,
                         sav=sav, sav_heads=sav_heads, reuse=False)
    summary = query(db, f"SELECT method, split, acc, bal_acc, f1, mcc, n FROM evaluations WHERE run_id = '{run_id}' "
                        "ORDER BY split DESC, method")
    _print_table(summary, f"run {run_id}", err)
    print(run_id)


@app.command()
def top(
    run: Annotated[str | None, typer.Option(help="Run id. Default: the latest run.")] = None,
    k: Annotated[int, typer.Option(help="Neurons per class.")] = 20,
    db: DbOpt = None,
) -> None:
    """The best neurons of a run by probe accuracy, with their held-out figures beside them."""
    from .leaderboard import top as best

    cols = ["rank", "class", "site", "layer", "neuron", "probe_acc", "eval_acc", "eval_bal_acc", "agreement"]
    table = best(db, run, k)
    _print_table(table.select(cols), f"top {k} neurons of run {table['run_id'][0] if len(table) else run}")


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="A read-only SQL query over runs, neurons, evaluations, datasets, "
                                         "artifacts and the views top_neurons, layer_summary, "
                                         "cross_dataset_neurons.")],
    db: DbOpt = None,
    csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
) -> None:
    """Run a read-only SQL query against the leaderboard database.

    Only statements that read run: SELECT (WITH, DESCRIBE, SHOW, SUMMARIZE) and EXPLAIN SELECT; reading files with
    read_parquet/read_csv works. COPY ... TO, EXPORT DATABASE, ATTACH, INSTALL/LOAD, SET, PRAGMA, CALL and every
    statement that creates, changes or drops something are refused before anything runs."""
    from .leaderboard import query as run_query

    table = run_query(db, query)
    if csv:
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, sys.stdout.buffer)
    else:
        _print_table(table, None)


@app.command("export-neurons")
def export_neurons(
    out: Annotated[str, typer.Option(help="Parquet file to write.")],
    run: Annotated[str | None, typer.Option(help="Run id. Default: the latest run.")] = None,
    db: DbOpt = None,
) -> None:
    """Write every neuron row of a run to a Parquet file (the run's metadata rides in the file's metadata)."""
    from .leaderboard import export_run_parquet, latest_run

    path = export_run_parquet(db, run or latest_run(db), out)
    console.print(f"wrote {path}")


def _print_table(table, title: str | None, out: Console | None = None) -> None:
    view = Table(title=title)
    for name in table.column_names:
        view.add_column(name, justify="right" if table.schema.field(name).type != "string" else "left")
    for row in table.to_pylist():
        view.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()))
    (out or console).print(view)


@app.command()
def export(
    out: Annotated[str | None, typer.Option(help="Artifact directory: new, empty, or an artifact to replace. "
                                             "Default: $SN_HOME/artifacts/<run>-...")] = None,
    run: Annotated[str | None, typer.Option(help="Run id. Default: the latest run.")] = None,
    neuron: Annotated[str | None, typer.Option(help="SITE:LAYER:INDEX of one neuron (binary runs). Default: the "
                                                  "best by probe accuracy.")] = None,
    ensemble: Annotated[int, typer.Option(help="Top-K neurons (per class) voting together.")] = 1,
    verify: Annotated[bool, typer.Option(help="Run the artifact on the eval split and check it against the store "
                                         "(records method early_exit).")] = True,
    db: DbOpt = None,
) -> None:
    """Write an early-exit artifact: only the weights up to the exit neuron, a manifest, the processor files.

    It is built beside --out and renamed into place; an existing --out that is a file, a link, the current folder
    or a folder of anything but an artifact is refused, untouched."""
    from .export import export as run_export
    from .manifest import verify as verified_manifest

    path = run_export(run, out, neuron=neuron, ensemble=ensemble, db=db, verify=verify)
    manifest = verified_manifest(path)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    console.print(f"artifact [bold]{path}[/] ({size / 1e6:.1f} MB), exit layer {manifest.exit_layer}")
    if manifest.metrics.early_exit_eval:
        m = manifest.metrics.early_exit_eval
        console.print(f"early exit on eval: acc {m['acc']:.3f}, bal_acc {m['bal_acc']:.3f} (n={m['n']}); "
                      "predictions equal the stored activations' classifier on every sample")


@app.command()
def predict(
    artifact: Annotated[str, typer.Argument(help="Artifact directory written by `sn export`.")],
    image: Annotated[list[str] | None, typer.Option(help="Image file (repeat for several).")] = None,
    question: Annotated[list[str] | None, typer.Option(help="Question (one per image, or one for all).")] = None,
    dataset: Annotated[str | None, typer.Option(help="Evaluate on a dataset (spec file or name) instead.")] = None,
    batch_size: Annotated[int, typer.Option(help="Samples per forward pass.")] = 16,
    device: Annotated[str | None, typer.Option(help="torch device. Default: cuda if available.")] = None,
    db: Annotated[str | None, typer.Option("--db", help="DuckDB file whose record of the artifact's manifest digest "
                                           "is checked. Default: $SN_HOME/sn.duckdb (if present).")] = None,
) -> None:
    """Answer questions about images with an early-exit artifact (or score it on a dataset).

    The artifact is verified first: every file against the manifest, the manifest against its own digest and
    against the digest the leaderboard recorded at export; it is refused if anything differs."""
    from .artifact import EarlyExitClassifier
    from .leaderboard import default_db_path
    from .predict import predict_dataset, predict_files

    clf = EarlyExitClassifier.load(artifact, device=device, db=db or default_db_path())
    if clf.recorded is False:
        print(f"note: {clf.manifest.digest} is not recorded in the leaderboard; the artifact is self-consistent",
              file=sys.stderr)
    if dataset:
        result = predict_dataset(clf, dataset, batch_size)
        console.print(f"{result['n']} samples: accuracy {result['acc']:.4f}, balanced accuracy "
                      f"{result['bal_acc']:.4f}, {result['samples_per_s']:.1f} samples/s")
        return
    for path, answer in predict_files(clf, image or [], question or [], batch_size):
        print(f"{path}\t{answer}")


@app.command()
def probe(
    model: Annotated[str, typer.Option("--model", "-m", help="Model to probe.")] = "sn-tiny-llava",
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset to probe.")] = "shapes-exist",
    sites: Annotated[str | None, typer.Option(help="Comma-separated sites. Default: all.")] = None,
    layers: Annotated[str | None, typer.Option(help="Decoder layers, e.g. '0-3'. Default: all.")] = None,
    batch_size: Annotated[int, typer.Option(help="Samples per forward pass.")] = 16,
    probe_size: Annotated[int | None, typer.Option(help="Override the spec's probe split size.")] = None,
    eval_size: Annotated[int | None, typer.Option(help="Override the spec's eval split size.")] = None,
    mode: Annotated[str, typer.Option(help="Search mode: exact or grid.")] = "exact",
    ensemble_k: Annotated[int, typer.Option(help="Neurons per class in the ensemble.")] = 5,
    dask_address: Annotated[str | None, typer.Option(envvar="SN_DASK_ADDRESS", help="dask scheduler.")] = None,
    db: DbOpt = None,
    source: SourceOpt = None,
) -> None:
    """The whole DAG through Prefect: extract -> search -> export -> evaluate (reuses finished stages)."""
    from pydantic import ValidationError

    from .pipeline import ProbeConfig

    try:
        config = ProbeConfig(model=model, dataset=dataset, sites=sites.split(",") if sites else list(SITES_ALL),
                             layers=layers, batch_size=batch_size, probe_size=probe_size, eval_size=eval_size,
                             mode=mode, ensemble_k=ensemble_k, dask_address=dask_address, db=db, source=source)
    except ValidationError as exc:
        raise SnError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    from .flows.probe import probe as probe_flow

    result = probe_flow(config)
    console.print(f"run [bold]{result['run_id']}[/]: artifact {result['artifact']}, early exit "
                  f"{result['speedup']:.2f}x faster than generate")


@app.command()
def report(
    run: Annotated[str, typer.Argument(help="Run id (see `sn sql \"SELECT run_id, model, dataset FROM runs\"`).")],
    out: Annotated[str | None, typer.Option(help="Report folder. Default: $SN_HOME/reports/RUN")] = None,
    db: DbOpt = None,
) -> None:
    """Write a run's report, DIR/index.html: results, plots, top neurons, provenance. It reads offline."""
    from .report import write_report

    print(write_report(run, out, db=db))


@app.command()
def transfer(
    run: Annotated[str, typer.Option(help="Run id whose SNs to evaluate.")],
    store: Annotated[str, typer.Option(help="Another activation store of the same model with the same classes "
                                       "(e.g. shapes-exist-shift for a run on shapes-exist).")],
    db: DbOpt = None,
) -> None:
    """Evaluate a run's best SN and ensemble (chosen on its own probe split), and the base model, on another store:
    a distribution shift. The rows go to the `transfers` table."""
    from .analyses import transfer as run_transfer

    table = run_transfer(db, run, store)
    _print_table(table.select(["target_dataset", "method", "split", "acc", "bal_acc", "f1", "mcc", "n"]),
                 f"run {run} on {store}")


@app.command()
def serve(
    cron: Annotated[str | None, typer.Option(help="Cron schedule of the reprobe deployment (default daily "
                                                "03:00, or $SN_REPROBE_CRON).")] = None,
) -> None:
    """Register and serve the probe, extract, search, export and reprobe deployments against $PREFECT_API_URL."""
    from .flows.serve import serve_all

    serve_all(cron)


@datasets_app.command("list")
def datasets_list() -> None:
    """List the built-in and registered dataset specs."""
    from .datasets import builtin_specs, load_spec_file
    from .registry import registered_specs

    table = Table("name", "kind", "format", "classes", "source")
    for kind, specs in (("built-in", builtin_specs()), ("registered", registered_specs())):
        for name, path in sorted(specs.items()):
            spec = load_spec_file(path)
            table.add_row(name, kind, spec.format, ", ".join(spec.classes), spec.source)
    console.print(table)


@datasets_app.command("add")
def datasets_add(
    spec: Annotated[str, typer.Argument(help="A dataset spec file (YAML), or a built-in name with --source.")],
    db: DbOpt = None,
    source: SourceOpt = None,
) -> None:
    """Register a dataset spec in the workspace (re-adding a name replaces it); `reprobe` probes it."""
    from .registry import add_dataset

    added, content_hash = add_dataset(spec, db, source)
    console.print(f"registered [bold]{added.name}[/] (content hash {content_hash})")


@datasets_app.command("import")
def datasets_import(
    tsv: Annotated[str, typer.Argument(help="A VLMEvalKit benchmark TSV (e.g. $LMUData/POPE.tsv).")],
    name: Annotated[str | None, typer.Option(help="Dataset name. Default: the file's name.")] = None,
    db: DbOpt = None,
) -> None:
    """Write a spec for a VLMEvalKit TSV (yes/no or multiple choice, told from its columns) and register it."""
    from .datasets.vlmevalkit import import_tsv

    path = import_tsv(tsv, name, db)
    print(path)


def main() -> None:
    # Offline machines: Prefect's telemetry would only log errors. A first ephemeral server creates its database,
    # which on 2 busy cores can take longer than Prefect's default 20 s.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    try:
        app()
    except SnError as exc:
        Console(stderr=True).print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
