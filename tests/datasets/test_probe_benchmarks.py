"""Every benchmark spec, a VLMEvalKit TSV spec and an `hf` spec go through the probe flow (Prefect: extract ->
search -> export, which verifies the artifact on eval -> speed-up -> report) on its fixture with a tiny random VLM
(layers 0-1, one site, 6 + 6 samples), and `sn probe` parses its command line; ScienceQA's (and the TSV's) answers and
votes stay within each question's options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from sn_store import leaderboard
from sn_store.datasets import load_dataset, resolve_spec
from sn_store.datasets.vlmevalkit import import_spec
from sn_store.evaluate import Neuron, vote_margins
from sn_store.pipeline import ProbeConfig, dataset_for

SOURCES = {"pope": "pope", "pope-random": "pope", "pope-popular": "pope", "pope-adversarial": "pope",
           "vizwiz": "vizwiz", "aokvqa": "aokvqa", "scienceqa-img": "scienceqa_derek", "clevr-yesno": "clevr",
           "clevr-count": "clevr", "instaorder-depth": "instaorder", "instaorder-occlusion": "instaorder",
           "vlmevalkit": "mcq_tsv", "hf": "pope"}
HF_SPEC = {"name": "hf-pope", "format": "hf", "source": "lmms-lab/POPE", "classes": ["no", "yes"], "id_field": "id",
           "params": {"config": "Full", "split": "popular"}}


def spec_for(name: str, bench, tmp_path: Path) -> str:
    """A built-in name, or a spec file written here for the imports (the TSV's as `sn datasets import` writes it)."""
    made = {"vlmevalkit": lambda: import_spec(bench.mcq_tsv, "mmtest"), "hf": lambda: HF_SPEC}
    if name not in made:
        return name
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(made[name]()))
    return str(path)


@pytest.mark.parametrize("name", list(SOURCES))
def test_probe_flow(bench, tmp_path, prefect_server, name):
    from sn_store.flows.probe import probe

    source = str(getattr(bench, SOURCES[name]))
    config = ProbeConfig(model="tiny-llava", dataset=spec_for(name, bench, tmp_path), source=source, layers="0-1",
                         sites=["resid"], probe_size=6, eval_size=6, batch_size=8, ensemble_k=3, speedup_repeats=1,
                         db=str(tmp_path / "sn.duckdb"))
    result = probe(config)
    ds = dataset_for(config)
    group = zarr.open_group(result["store"], mode="r")
    assert group.attrs["dataset"]["skipped"] == ds.skipped
    assert group.attrs["dataset"]["spec"]["source"] == source
    assert group.attrs["dataset"]["content_hash"] == ds.content_hash
    runs = leaderboard.query(config.db, "SELECT run_id, dataset, dataset_hash FROM runs").to_pylist()
    assert runs == [{"run_id": result["run_id"], "dataset": ds.spec.name, "dataset_hash": ds.content_hash}]
    assert leaderboard.top(config.db, result["run_id"], 1).num_rows >= 1
    assert (Path(result["artifact"]) / "manifest.json").is_file() and Path(result["report"]).is_file()
    early = leaderboard.query(config.db, "SELECT acc FROM evaluations WHERE method = 'early_exit' AND split = "
                                         "'eval'").to_pylist()
    assert len(early) == 1 and 0 <= early[0]["acc"] <= 1  # the export ran the artifact on eval (verify)
    if ds.class_mask is not None:
        check_options(group, ds, config.db, result["run_id"])


def check_options(group, ds, db, run):
    """The base model's answer and the ensemble's vote are among each question's options."""
    mask = np.asarray(group["class_mask"][:])
    assert np.array_equal(mask, ds.class_mask) and not mask.all()
    logits = np.asarray(group["model_logits"][:])
    pred = np.asarray(group["model_pred"][:])
    for i in range(len(pred)):  # brute force: the best logit among the options
        options = np.flatnonzero(mask[i])
        assert pred[i] == options[np.argmax(logits[i, options])]
    import json

    detail = leaderboard.query(db, f"SELECT detail FROM evaluations WHERE run_id = '{run}' AND "
                                   "method = 'sn_ensemble' LIMIT 1").to_pylist()[0]["detail"]
    neurons = [Neuron(d["site"], d["layer"], d["neuron"], d["class"], d["polarity"], float(d["threshold"]), 1.0)
               for d in json.loads(detail)]
    from sn_store.store import StoreReader

    acts = StoreReader(group.store.root).neurons([(n.site, n.layer, n.index) for n in neurons])
    k = len(ds.spec.classes)
    got = vote_margins(acts, neurons, k, mask)
    for i in range(len(got)):  # brute force: most firing neurons among the options, ties by the largest margin
        z = {c: [n.polarity * (acts[i, j] - n.threshold) for j, n in enumerate(neurons) if n.cls == c]
             for c in range(k)}
        options = list(np.flatnonzero(mask[i]))
        votes = {c: sum(v > 0 for v in z[c]) for c in options}
        top = [c for c in options if votes[c] == max(votes.values())]
        assert got[i] == max(top, key=lambda c: max(z[c], default=-np.inf))


def test_sn_probe_cli_on_a_local_copy(bench, tmp_path, prefect_server):
    """The command line parsed by the real `sn` command, in this process (not CliRunner: Prefect's log handlers
    would keep its streams, closed after the call, and later flows in the session would fail to log)."""
    import typer

    from sn_store.cli import app

    db = str(tmp_path / "sn.duckdb")
    typer.main.get_command(app).main(["probe", "--model", "tiny-llava", "--dataset", "pope-random", "--source",
                                      str(bench.pope), "--layers", "0-1", "--probe-size", "6", "--eval-size", "6",
                                      "--batch-size", "8", "--ensemble-k", "2", "--db", db], standalone_mode=False)
    runs = leaderboard.query(db, "SELECT dataset, dataset_hash FROM runs").to_pylist()
    assert [r["dataset"] for r in runs] == ["pope-random"]
    assert runs[0]["dataset_hash"] == load_dataset(
        resolve_spec("pope-random", str(bench.pope)).with_sizes(6, 6)).content_hash


def test_sn_extract_cli_takes_source(bench, tmp_path):
    from typer.testing import CliRunner

    from sn_store.cli import app

    store = tmp_path / "cli.zarr"
    out = CliRunner().invoke(app, ["extract", "--model", "tiny-llava", "--dataset", "pope-adversarial", "--source",
                                   str(bench.pope), "--layers", "0", "--sites", "resid", "--store", str(store)])
    assert out.exit_code == 0, out.output
    meta = zarr.open_group(str(store), mode="r").attrs["dataset"]
    assert meta["spec"]["source"] == str(bench.pope)
    assert meta["content_hash"] == load_dataset("pope-adversarial", source=str(bench.pope)).content_hash
