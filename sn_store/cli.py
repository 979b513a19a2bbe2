"""The `sn` command line. Each command is a thin wrapper over the library function of the same name."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from . import checks
from .errors import SnError

try:  # typer >= 0.20 carries its own copy of click
    from typer._click.exceptions import ClickException
except ImportError:
    from click.exceptions import ClickException

app = typer.Typer(
    help="Find Super Neurons in vision-language models and turn them into early-exit classifiers.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
)
datasets_app = typer.Typer(help="Dataset specs: built-in and registered.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
models_app = typer.Typer(help="Model families.", no_args_is_help=True)
app.add_typer(models_app, name="models")
# Piped output (CI, files) gets a wide fixed width instead of rich's 80 columns, so tables keep their headers.
console = Console(width=None if sys.stdout.isatty() else 160)

def _checked(check):
    """A typer callback running one of the shared checks (sn_store.checks) on a value the user gave."""
    return lambda value: value if value is None else check(value)


def _prefect_api(url: str | None) -> str | None:
    if url:  # checked here, before any flow starts, and handed to Prefect through its own variable
        os.environ["PREFECT_API_URL"] = checks.prefect_api(url)
    return url


# Every option that more than one command takes is declared (and validated) once, here.
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="HF hub id, local model directory, or a built-in "
                                       "name (sn-tiny-llava: trained; tiny-<family>: random weights, see "
                                       "`sn models list`).")]
DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="A dataset spec file (YAML) or a built-in or "
                                         "registered name (see `sn datasets list`).")]
SourceOpt = Annotated[str | None, typer.Option("--source", help="Where the dataset's data is, instead of the spec's "
                                               "source: a local copy (a folder in the hub's layout, a save_to_disk "
                                               "folder, the original release's files) or a hub id.")]
DbOpt = Annotated[str | None, typer.Option("--db", help="DuckDB file. Default: $SN_HOME/sn.duckdb.")]
LayersOpt = Annotated[str | None, typer.Option(callback=_checked(checks.layers), help="Decoder layers, e.g. "
                                               "'0,2,5-7' (negative: from the end). Default: all.")]
SitesOpt = Annotated[str | None, typer.Option(callback=_checked(checks.sites), help="Comma-separated sites: "
                                              f"{', '.join(checks.SITES)}. Default: all.")]
CsvOpt = Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")]
BatchOpt = Annotated[int, typer.Option(min=1, help="Samples per forward pass.")]
DeviceOpt = Annotated[str | None, typer.Option(callback=_checked(checks.device), help="torch device: cpu, cuda, "
                                               "cuda:N or mps. Default: cuda if available, else cpu.")]
ModelDtypeOpt = Annotated[str | None, typer.Option(callback=_checked(checks.model_dtype), help="Weights dtype: "
                                                   f"{', '.join(checks.MODEL_DTYPES)}. Default: bfloat16 on CUDA, "
                                                   "float32 on CPU.")]
EnsembleKOpt = Annotated[int, typer.Option(min=1, help="Neurons (per class) in the majority-vote ensemble.")]
DaskOpt = Annotated[str | None, typer.Option(envvar="SN_DASK_ADDRESS", help="A dask.distributed scheduler "
                                             "(tcp://host:port). Default: local threads.")]
RunOpt = Annotated[str | None, typer.Option(help="Run id. Default: the latest run.")]
PrefectApiOpt = Annotated[str | None, typer.Option("--prefect-api-url", envvar="PREFECT_API_URL",
                                                   callback=_prefect_api, help="Prefect server API, e.g. "
                                                   "http://127.0.0.1:4200/api; checked before anything runs. "
                                                   "Unset: a temporary local server.")]


@app.command()
def extract(
    model: ModelOpt,
    dataset: DatasetOpt,
    sites: SitesOpt = None,
    layers: LayersOpt = None,
    batch_size: BatchOpt = 16,
    store: Annotated[str | None, typer.Option(help="Store path or fsspec URL. Default: $SN_HOME/stores/"
                                                 "<model>__<dataset>-<fingerprint>.zarr, as sn probe")] = None,
    dtype: Annotated[str, typer.Option(help="Stored activation dtype: float16 or float32.")] = "float16",
    baseline: Annotated[bool, typer.Option(help="Also record the base model's own answer (needs the full "
                                           "forward pass; --no-baseline stops after the deepest layer).")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace a store made with other arguments.")] = False,
    device: DeviceOpt = None,
    model_dtype: ModelDtypeOpt = None,
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
    prefect_api_url: PrefectApiOpt = None,
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
    from .store import describe

    table = Table(title=f"store {path}")
    table.add_column("what")
    table.add_column("value")
    for what, value in describe(path).items():
        table.add_row(what, value)
    console.print(table)



@app.command()
def search(
    store: Annotated[str, typer.Option(help="Activation store written by `sn extract` (path or fsspec URL).")],
    mode: Annotated[str, typer.Option(help="exact: every cut between distinct probe values; grid: the paper's "
                                      "fixed thresholds over [-3, 3].")] = "exact",
    n_grid: Annotated[int, typer.Option(min=1, help="Grid points in grid mode.")] = 61,
    dask_address: DaskOpt = None,
    ensemble_k: EnsembleKOpt = 5,
    sav: Annotated[bool | None, typer.Option("--sav/--no-sav", help="The SAV baseline (attention heads). Default: "
                                             "when the store has the attn site and attn_heads.")] = None,
    sav_heads: Annotated[int, typer.Option(min=1, help="Attention heads voting in the SAV baseline.")] = 20,
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
    run: RunOpt = None,
    k: Annotated[int, typer.Option(min=1, help="Neurons per class.")] = 20,
    by: Annotated[str, typer.Option(help="Sort by probe (how the search ranks them), eval (held-out accuracy: "
                                    "for reading, choosing by it would tune on eval) or auroc (held out).")] = "probe",
    sites: SitesOpt = None,
    layers: Annotated[str | None, typer.Option(callback=_checked(checks.layers), help="Only these decoder layers, "
                                               "e.g. '0,2,5-7'. Default: all.")] = None,
    csv: CsvOpt = False,
    db: DbOpt = None,
) -> None:
    """The best neurons of a run with their held-out figures beside them; `rank` is the run-wide rank by probe."""
    from .leaderboard import top as best

    cols = ["rank", "class", "site", "layer", "neuron", "probe_acc", "eval_acc", "eval_bal_acc", "eval_auroc",
            "agreement"]
    table = best(db, run, k, by=by, sites=checks.site_list(sites) if sites else None,
                 layers=checks.layer_list(layers) if layers else None)
    where = "".join(f", {name} {value}" for name, value in (("sites", sites), ("layers", layers)) if value)
    _emit(table.select(cols), f"top {k} neurons by {by} of run {table['run_id'][0] if len(table) else run}{where}",
          csv)


@app.command()
def runs(
    model: Annotated[str | None, typer.Option("--model", "-m", help="Only this model.")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Only this dataset.")] = None,
    csv: CsvOpt = False,
    db: DbOpt = None,
) -> None:
    """Every search run, newest first: model, dataset, date and its best held-out (eval) accuracies."""
    from .leaderboard import runs_summary

    _emit(runs_summary(db, model, dataset), "runs (accuracies on the eval split)", csv)


@app.command()
def artifacts(
    run: Annotated[str | None, typer.Option(help="Only this run's artifacts.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Only this model.")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Only this dataset.")] = None,
    csv: CsvOpt = False,
    db: DbOpt = None,
) -> None:
    """Every exported early-exit artifact, newest first, and whether its folder is still on disk.

    Columns: run, model, dataset, exit layer, neurons, the artifact's early-exit accuracy on eval, speed-up."""
    from pathlib import Path

    import pyarrow as pa

    from .leaderboard import artifacts_summary

    table = artifacts_summary(db, run, model, dataset)
    on_disk = pa.array([Path(p).is_dir() for p in table["artifact"].to_pylist()], pa.bool_())
    _emit(table.append_column("on_disk", on_disk), "artifacts (early-exit accuracy on the eval split)", csv)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="A read-only SQL query over runs, neurons, evaluations, datasets, "
                                         "artifacts and the views top_neurons, layer_summary, "
                                         "cross_dataset_neurons.")],
    db: DbOpt = None,
    csv: CsvOpt = False,
) -> None:
    """Run a read-only SQL query against the leaderboard database.

    Only statements that read run: SELECT (WITH, DESCRIBE, SHOW, SUMMARIZE) and EXPLAIN SELECT; reading files with
    read_parquet/read_csv works. COPY ... TO, EXPORT DATABASE, ATTACH, INSTALL/LOAD, SET, PRAGMA, CALL and every
    statement that creates, changes or drops something are refused before anything runs."""
    from .leaderboard import query as run_query

    _emit(run_query(db, query), None, csv)


@app.command("export-neurons")
def export_neurons(
    out: Annotated[str, typer.Option(help="Parquet file to write.")],
    run: RunOpt = None,
    db: DbOpt = None,
) -> None:
    """Write every neuron row of a run to a Parquet file (the run's metadata rides in the file's metadata)."""
    from .leaderboard import export_run_parquet, latest_run

    path = export_run_parquet(db, run or latest_run(db), out)
    console.print(f"wrote {path}")


def _emit(table, title: str | None, csv: bool) -> None:
    """A result on stdout: a table for people, or CSV (header first, every column apart) for programs."""
    if csv:
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, sys.stdout.buffer)
    else:
        _print_table(_speedup_with_spread(table), title)


def _speedup_with_spread(table):
    """For people, the measured speed-up as one column: '3.1x (2.9-3.4)', the median and its interquartile range."""
    if not {"speedup", "speedup_q1", "speedup_q3"} <= set(table.column_names):
        return table
    import pyarrow as pa

    text = [f"{m:.1f}x" + (f" ({q1:.1f}-{q3:.1f})" if q1 is not None and q3 is not None else "") if m else None
            for m, q1, q3 in zip(*(table[c].to_pylist() for c in ("speedup", "speedup_q1", "speedup_q3")))]
    at = table.column_names.index("speedup")
    table = table.drop(["speedup", "speedup_q1", "speedup_q3"])
    return table.add_column(at, "speedup (IQR)", pa.array(text, pa.string()))


def _print_table(table, title: str | None, out: Console | None = None) -> None:
    view = Table(title=title)
    for name in table.column_names:
        view.add_column(name, justify="right" if table.schema.field(name).type != "string" else "left")
    for row in table.to_pylist():
        view.add_row(*("-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()))
    (out or console).print(view)


@app.command()
def export(
    out: Annotated[str | None, typer.Option(help="Artifact directory: new, empty, or an artifact to replace. "
                                             "Default: $SN_HOME/artifacts/<run>-...")] = None,
    run: RunOpt = None,
    neuron: Annotated[str | None, typer.Option(help="SITE:LAYER:INDEX of one neuron (binary runs). Default: the "
                                                  "best by probe accuracy.")] = None,
    ensemble: Annotated[int, typer.Option(min=1, help="Top-K neurons (per class) voting together.")] = 1,
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
    batch_size: BatchOpt = 16,
    device: DeviceOpt = None,
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
        _print_splits(predict_dataset(clf, dataset, batch_size))
        return
    for path, answer in predict_files(clf, image or [], question or [], batch_size):
        print(f"{path}\t{answer}")


def _print_splits(result: dict) -> None:
    same = result["dataset"] == result["chosen_on"]
    table = Table("split", "n", "acc", "bal_acc", "f1", "mcc", "held out",
                  title=f"{result['dataset']}: early exit on each split ({result['samples_per_s']:.1f} samples/s)")
    for name, m in result["splits"].items():
        held_out = "no: the neurons were chosen on it" if same and name == "probe" else "yes"
        table.add_row(name, str(m["n"]), *(_pct(m[k]) for k in ("acc", "bal_acc", "f1", "mcc")), held_out)
    console.print(table)
    console.print(f"The neurons were chosen on the probe split of {result['chosen_on']}"
                  + (": read the eval row." if same else "; both splits here are new to them."), highlight=False)


@app.command()
def probe(
    model: Annotated[str, typer.Option("--model", "-m", help="Model to probe.")] = "sn-tiny-llava",
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset to probe.")] = "shapes-exist",
    sites: SitesOpt = None,
    layers: LayersOpt = None,
    batch_size: BatchOpt = 16,
    probe_size: Annotated[int | None, typer.Option(help="Override the spec's probe split size.")] = None,
    eval_size: Annotated[int | None, typer.Option(help="Override the spec's eval split size.")] = None,
    mode: Annotated[str, typer.Option(help="Search mode: exact or grid.")] = "exact",
    ensemble_k: EnsembleKOpt = 5,
    dask_address: DaskOpt = None,
    db: DbOpt = None,
    source: SourceOpt = None,
    prefect_api_url: PrefectApiOpt = None,
) -> None:
    """The whole DAG through Prefect: extract -> search -> export -> evaluate (reuses finished stages)."""
    from pydantic import ValidationError

    from .pipeline import ProbeConfig

    try:
        config = ProbeConfig(model=model, dataset=dataset, sites=checks.site_list(sites or ",".join(checks.SITES)),
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
    cron: Annotated[str | None, typer.Option(envvar="SN_REPROBE_CRON", callback=_checked(checks.cron),
                                             help="Cron schedule of the reprobe deployment. Default: daily "
                                             "03:00.")] = None,
    prefect_api_url: PrefectApiOpt = None,
    ephemeral: Annotated[bool, typer.Option("--ephemeral", help="Serve even without PREFECT_API_URL, on a throwaway "
                                            "server inside this process that no UI can reach.")] = False,
) -> None:
    """Register and serve the probe, extract, search, export and reprobe deployments against $PREFECT_API_URL
    (refused when it is not set, unless --ephemeral)."""
    from .flows.serve import serve_all

    serve_all(cron, ephemeral)


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


store_app = typer.Typer(help="Activation stores: their contract, and checks.", no_args_is_help=True)
app.add_typer(store_app, name="store")


@store_app.command("schema")
def store_schema() -> None:
    """Print the JSON schema of a store's group attributes (required: classes, sites, complete)."""
    import json

    from .store import schema

    print(json.dumps(schema(), indent=2))


@store_app.command("verify")
def store_verify(path: Annotated[str, typer.Argument(help="Store path or fsspec URL.")]) -> None:
    """Read every chunk of every array of a finished store and check its crc32c checksum."""
    from .store import verify

    console.print(f"{path}: {verify(path)} chunks read, every one intact")


@models_app.command("list")
def models_list() -> None:
    """List the model families (HF model types): built-in tiny model and the reference checkpoints each follows."""
    from .models import registered

    table = Table("family", "built-in tiny model", "reference checkpoints")
    for model_type, family in sorted(registered().items()):
        table.add_row(model_type, family.tiny_name, ", ".join(family.checkpoints))
    console.print(table)


def main() -> None:
    # Offline machines: Prefect's telemetry would only log errors. A first ephemeral server creates its database,
    # which on 2 busy cores can take longer than Prefect's default 20 s.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    try:
        code = app(standalone_mode=False)  # we print errors: one line each, not typer's boxed usage text
    except SnError as exc:
        _fail(str(exc), 1)
    except ClickException as exc:
        if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            hint = f" (see `{exc.ctx.command_path} --help`)" if getattr(exc, "ctx", None) else ""
            _fail(exc.format_message() + hint, exc.exit_code)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    Console(stderr=True).print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)
    sys.exit(code)
