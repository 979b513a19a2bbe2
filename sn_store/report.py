"""Reports: one page per run (`DIR/index.html`), and one suite page linking the pages of several runs.

A report folder holds `index.html`, its PNG plots and `report.json` (what wrote it and every file it holds). The page
reads offline, straight from the file: CSS inline, images as relative PNG files, no script, nothing fetched. The
folder is built beside `DIR` and put in place by one rename (the export's staging); `DIR` must be absent, empty, or a
report folder holding nothing but its listed files, so a report never replaces anything else.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from datetime import UTC, datetime
from pathlib import Path

from . import __version__, leaderboard
from .errors import SnError
from .workspace import subdir

MARKER = "report.json"
KIND = "sn_store report"
# evaluations.method -> its row in the results table, in this order; a method the run lacks has no row.
METHODS = {
    "model": "base model",
    "sav": "SAV",
    "sn": "best SN",
    "sn_ensemble": "SN ensemble",
    "early_exit": "early exit",
}
WHAT = {"model": "its own answer: first-token logits over the class verbalizers"}  # for rows without units
METRICS = ("acc", "bal_acc", "f1", "mcc")
TOP_COLUMNS = (  # (key in top_neurons, title, numeric)
    ("rank", "rank", True), ("class", "class", False), ("site", "site", False), ("layer", "layer", True),
    ("neuron", "neuron", True), ("polarity", "polarity", True), ("threshold", "threshold", True),
    ("probe_acc", "probe acc", True), ("eval_acc", "eval acc", True), ("eval_bal_acc", "eval bal. acc", True),
    ("eval_mcc", "eval MCC", True), ("eval_auroc", "eval AUROC", True), ("agreement", "agreement", True),
)
DASH, MINUS = "\N{EN DASH}", "\N{MINUS SIGN}"  # a missing figure; typographic minus
SHOWN_UNITS = 6  # neurons or heads named in a results row before "..."


def default_dir(run_id: str) -> Path:
    return subdir("reports") / run_id


# ---------------------------------------------------------------------------------------------- the run's figures


def _num(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return DASH
    if isinstance(x, float) and math.isinf(x):
        return "+∞" if x > 0 else MINUS + "∞"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _unit(u: dict) -> str:
    """'mlp L1 #42' for a neuron (evaluations say `neuron`, artifacts `index`), 'L3 H5' for an attention head."""
    if "head" in u:
        return f"L{u['layer']} H{u['head']}"
    return f"{u['site']} L{u['layer']} #{u.get('neuron', u.get('index'))}"


def describe(detail: str | None) -> str:
    """The neurons or heads an evaluation used, from its `detail` JSON."""
    try:
        units = json.loads(detail) if detail else []
    except json.JSONDecodeError:
        return detail[:80]
    if not isinstance(units, list) or not all(isinstance(u, dict) for u in units):
        return ""
    named = ", ".join(_unit(u) for u in units[:SHOWN_UNITS]) + (", …" if len(units) > SHOWN_UNITS else "")
    return f"{len(units)} {'heads' if 'head' in units[0] else 'neurons'}: {named}" if len(units) > 1 else named


def _read(con, sql: str, params: list) -> list[dict]:
    return con.sql(sql, params=params).to_arrow_table().to_pylist()


def results(db, run_id: str) -> list[dict]:
    """One row per method the run has: the latest evaluation of each split, and the early exit's speed-up."""
    con = leaderboard.connect(db, read_only=True)
    try:
        evals = _read(con, "SELECT * FROM evaluations WHERE run_id = ? QUALIFY row_number() OVER "
                      "(PARTITION BY method, split ORDER BY rowid DESC) = 1", [run_id])
        art = _read(con, "SELECT * FROM artifacts WHERE run_id = ? "  # *: an older database lacks speedup_q1/q3
                    "ORDER BY created_at DESC LIMIT 1", [run_id])
    finally:
        con.close()
    by = {(e["method"], e["split"]): e for e in evals}
    rows = []
    for method, label in METHODS.items():
        splits = {s: by.get((method, s)) for s in ("probe", "eval")}
        if not any(splits.values()):
            continue
        detail = next(e["detail"] for e in splits.values() if e)
        row = {"method": method, "label": label, "what": describe(detail) or WHAT.get(method, ""), "speedup": None,
               "exit_layer": None}
        for s, e in splits.items():
            row.update({f"{s}_{m}": e[m] if e else None for m in (*METRICS, "n")})
        if method == "early_exit" and art:
            a = art[0]
            row.update(speedup=a["speedup"], exit_layer=a["exit_layer"],
                       speedup_text=leaderboard.speedup_text(a["speedup"], a.get("speedup_q1"), a.get("speedup_q3")))
            row["what"] = f"exit after layer {art[0]['exit_layer']}: {row['what']}"
        rows.append(row)
    return rows


def results_table(db, run_id: str) -> list[dict]:
    """The results as plain rows (a Prefect table artifact, JSON): figures rounded to 4 digits."""
    def clean(v):
        return None if isinstance(v, float) and not math.isfinite(v) else round(v, 4) if isinstance(v, float) else v

    return [{k: clean(v) for k, v in r.items()} for r in results(db, run_id)]


def _best(values: dict) -> set:
    finite = {k: v for k, v in values.items() if v is not None and math.isfinite(v)}
    top = max(finite.values(), default=None)
    return {k for k, v in finite.items() if v == top}


def _results_view(rows: list[dict]) -> list[dict]:
    best = _best({r["method"]: r["eval_acc"] for r in rows})
    return [{"label": r["label"], "what": r["what"], "best": r["method"] in best,
             **{s: {m: _num(r[f"{s}_{m}"]) for m in METRICS} for s in ("probe", "eval")},
             "n": f"{_num(r['probe_n'])} / {_num(r['eval_n'])}",
             "speedup": r.get("speedup_text") if r["speedup"] else DASH} for r in rows]


def _top_view(db, run_id: str, k: int) -> list[dict]:
    rows = leaderboard.top(db, run_id, k).to_pylist()
    shown = []
    for r in rows:
        row = {key: _num(r[key], 4 if key in ("threshold",) else 3) for key, _, _ in TOP_COLUMNS}
        row["polarity"] = {1: "+1", -1: MINUS + "1"}.get(r["polarity"], "0")
        shown.append(row)
    return shown


def _text(v) -> str | None:
    if v is None or v == "" or v == []:
        return None
    return v if isinstance(v, str) else json.dumps(v, default=str)


def provenance(db, run: dict, artifact: str | None) -> list[tuple[str, str | None]]:
    from .store import DatasetProvenance, ModelProvenance, StoreAttrs, read_attrs

    attrs = read_attrs(run["store"])  # None where the store is gone or unreadable: the database's part is shown
    readable = attrs is not None
    attrs = attrs or StoreAttrs.model_construct(classes=[], sites=[], complete=False)
    model, dataset = attrs.model or ModelProvenance(), attrs.dataset or DatasetProvenance()
    db_path = Path(db) if db is not None else leaderboard.default_db_path()
    return [(key, _text(value)) for key, value in (
        ("model", run["model"]),
        ("model type", model.model_type),
        ("model revision", model.revision),
        ("model config hash", run["model_config_hash"] or model.config_hash),
        ("model dtype", model.dtype),
        ("dataset", run["dataset"]),
        ("dataset content hash", run["dataset_hash"] or dataset.content_hash),
        ("prompt", attrs.prompt),
        ("store", run["store"] if readable else f"{run['store']} (not readable now)"),
        ("store fingerprint", run["store_fingerprint"]),
        ("sites, layers", f"{', '.join(attrs.sites)}; layers {_span(attrs.layers)}" if attrs.sites else None),
        ("search", f"{run['mode']}, ensemble of {run['ensemble_k']} per class"),
        ("database", str(db_path.resolve())),
        ("early-exit artifact", artifact),
        ("sn_store version (search)", run["sn_store_version"]),
        ("sn_store version (store)", attrs.sn_store_version),
        ("sn_store version (report)", __version__),
    )]


def _span(layers) -> str:
    if not layers:
        return DASH
    layers = sorted(layers)
    return f"{layers[0]}-{layers[-1]}" if layers == list(range(layers[0], layers[-1] + 1)) else ", ".join(
        map(str, layers))


# ------------------------------------------------------------------------------------------------- the figures

# How to read each analysis (keyed by the analyses' figure name); a figure without an entry shows its title only.
CAPTIONS = {
    "threshold_curve": "Accuracy of the top neurons as their threshold alpha sweeps [-3, 3], probe and eval "
                       "(the paper's Figure 3a).",
    "layer_counts": "Neurons per layer and site that beat the base model, on probe and on eval (Figure 3b).",
    "agreement": "Agreement with the base model's answer against the neuron's eval accuracy (Figure 4).",
    "probe_size": "Best SN re-selected on subsets of the probe split, several seeds (mean and spread); the base "
                  "model dashed (Figure 5).",
    "prompt_robustness": "The chosen SNs under reworded prompts.",
    "transfer": "The SNs chosen here, evaluated on another dataset with the same classes (distribution shift).",
}


def _figures(db, run_id: str, out: Path) -> list[dict]:
    """The paper's analyses that apply to the run, as PNG files in `out`."""
    try:
        from . import analyses
    except ImportError:  # the analyses module lands separately (issue 13, item 2)
        return []
    from PIL import Image

    shown = []
    for fig in analyses.write_figures(db, run_id, out):
        png = Path(fig.png)
        with Image.open(png) as im:
            width, height = im.size
        shown.append({"name": fig.name, "title": fig.title, "caption": CAPTIONS.get(fig.name, ""),
                      "file": png.name, "width": width, "height": height})
    return shown


# ------------------------------------------------------------------------------------------- writing a report folder


def _template(name: str):
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("sn_store", "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    return env.get_template(name)


def is_report(path: Path) -> bool:
    """A folder that a report wrote, holding nothing but the plain files its `report.json` lists."""
    try:
        marker = json.loads((path / MARKER).read_text(encoding="utf-8"))
        listed = set(marker["files"]) | {MARKER}
        entries = list(path.iterdir())
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return marker.get("kind") == KIND and all(
        p.name in listed and stat.S_ISREG(os.lstat(p).st_mode) for p in entries)


def check_destination(out: Path) -> None:
    """Refuse a destination that is not absent, an empty folder, or a report folder: a report replaces only its own
    kind."""
    where = f"report folder {out}"
    here = Path.cwd().resolve()
    if out.resolve() == here or out.resolve() in here.parents:
        raise SnError(f"{where}: is the current folder or holds it; name a new folder for the report")
    try:
        mode = os.lstat(out).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode) or not stat.S_ISDIR(mode):
        raise SnError(f"{where}: exists and is not a folder; nothing was changed")
    if any(out.iterdir()) and not is_report(out):
        raise SnError(f"{where}: exists and is not an sn_store report (no {MARKER} of ours, or files it does not "
                      "list); nothing was changed: name a new or empty folder")


def _publish(out: Path, page: str, name: str, context: dict, render) -> Path:
    """Render into a staging folder beside `out` (`render(tmp)` adds files and context), then rename it to `out`."""
    from .artifact import staging

    with staging(out, check=check_destination) as tmp:
        context = {**context, **render(tmp)}
        html = _template(page).render(version=__version__, written_at=_now(), **context)
        (tmp / "index.html").write_text(html, encoding="utf-8")
        files = sorted(p.name for p in tmp.iterdir())
        (tmp / MARKER).write_text(json.dumps({"kind": KIND, "name": name, "sn_store_version": __version__,
                                              "files": files}, indent=1), encoding="utf-8")
    return out / "index.html"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def write_report(run_id: str | None = None, out_dir: str | Path | None = None, db=None, top_k: int = 10) -> Path:
    """Write one run's report (default: the latest run; default folder `$SN_HOME/reports/<run>`); returns the path of
    its `index.html`."""
    run = leaderboard.run_row(db, run_id)
    run_id = run["run_id"]
    out = Path(out_dir) if out_dir is not None else default_dir(run_id)
    rows = results(db, run_id)
    artifact = _artifact_path(db, run_id)
    context = {
        "run": {**run, "classes": ", ".join(run["classes"] or []), "created_at": str(run["created_at"])[:19]},
        "results": _results_view(rows),
        "top_columns": [{"key": k, "title": t, "num": n} for k, t, n in TOP_COLUMNS],
        "top": _top_view(db, run_id, top_k),
        "provenance": provenance(db, run, artifact),
    }
    return _publish(out, "report.html.j2", run_id, context, lambda tmp: {"figures": _figures(db, run_id, tmp)})


def _artifact_path(db, run_id: str) -> str | None:
    con = leaderboard.connect(db, read_only=True)
    try:
        found = con.execute("SELECT path FROM artifacts WHERE run_id = ? ORDER BY created_at DESC LIMIT 1",
                            [run_id]).fetchall()
    finally:
        con.close()
    return found[0][0] if found else None


# ------------------------------------------------------------------------------------------------ the suite page


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "suite"


def _task_row(db, run_id: str, href: str) -> dict:
    run = leaderboard.run_row(db, run_id)
    rows = {r["method"]: r for r in results(db, run_id)}
    acc = {label: _num(rows[m]["eval_acc"]) if m in rows else DASH for m, label in METHODS.items()}
    best = _best({METHODS[m]: r["eval_acc"] for m, r in rows.items()})
    exit_row = rows.get("early_exit", {})
    return {"run_id": run_id, "model": run["model"], "dataset": run["dataset"], "acc": acc, "best": best,
            "best_sn": rows["sn"]["what"] if "sn" in rows else DASH, "exit_layer": _num(exit_row.get("exit_layer")),
            "speedup": exit_row["speedup_text"] if exit_row.get("speedup") else DASH, "href": href}


def write_suite_report(run_ids: list[str], out_dir: str | Path | None = None, db=None) -> Path:
    """One page linking the reports of `run_ids`, with their held-out figures side by side. Each run's report is the
    folder named by its run id beside `out_dir` (default `$SN_HOME/reports/suite-<model>`), written where missing.
    Returns the path of the page."""
    if not run_ids:
        raise SnError("a suite report needs at least one run id")
    runs = [leaderboard.run_row(db, r) for r in run_ids]
    models = ", ".join(dict.fromkeys(r["model"] for r in runs))
    out = Path(out_dir) if out_dir is not None else subdir("reports") / f"suite-{_slug(models)}"
    for r in runs:
        if not is_report(out.parent / r["run_id"]):
            write_report(r["run_id"], out.parent / r["run_id"], db)
    tasks = sorted((_task_row(db, r["run_id"], f"../{r['run_id']}/index.html") for r in runs),
                   key=lambda t: (t["dataset"], t["model"]))
    context = {"models": models, "tasks": tasks, "methods": list(METHODS.values()),
               "several_models": len({r["model"] for r in runs}) > 1}
    return _publish(out, "suite.html.j2", f"suite {models}", context, lambda tmp: {})
