"""The leaderboard commands through the real CLI: search prints the run id, top/sql read it, sql stays read-only."""

from __future__ import annotations

import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from sn_store.datasets import load_dataset
from sn_store.extract import extract
from tests.conftest import adapter, small_spec


def sn(*args):
    return subprocess.run([sys.executable, "-m", "sn_store", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    store = extract(adapter("tiny-llava"), load_dataset(small_spec(n=32)), store=str(tmp / "s.zarr"), progress=False)
    db = str(tmp / "sn.duckdb")
    res = sn("search", "--store", store, "--db", db, "--mode", "grid", "--ensemble-k", "3")
    assert res.returncode == 0, res.stderr
    return res.stdout.strip(), db, tmp, res.stderr


def test_search_prints_only_the_run_id_on_stdout(run):
    run_id, _db, _, stderr = run
    assert len(run_id) == 12 and "\n" not in run_id
    assert "sn_ensemble" in stderr  # the evaluation summary goes to stderr


def test_top_sql_and_parquet(run):
    run_id, db, tmp, _ = run
    res = sn("top", "--db", db, "--k", "2")
    assert res.returncode == 0 and run_id in res.stdout and "eval_acc" in res.stdout
    res = sn("sql", f"SELECT count(*) AS n FROM neurons WHERE run_id = '{run_id}'", "--db", db, "--csv")
    assert res.returncode == 0 and res.stdout.split() == ['"n"', str(4 * 256)]
    res = sn("export-neurons", "--db", db, "--out", str(tmp / "run.parquet"))
    assert res.returncode == 0
    assert pq.read_table(tmp / "run.parquet").num_rows == 4 * 256


def test_sql_is_read_only_and_errors_are_one_line(run):
    _, db, _, _ = run
    res = sn("sql", "DELETE FROM neurons", "--db", db)
    assert res.returncode == 1 and "read-only" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = sn("top", "--db", db, "--run", "nope")
    assert res.returncode == 1 and "nope" in res.stderr
    res = sn("search", "--store", str(db) + ".missing", "--db", db)
    assert res.returncode == 1 and "no activation store" in res.stderr


def test_four_searches_into_one_database_at_once(run):
    """Four `sn search` processes on the same DuckDB file at the same time: none fails, no row is lost."""
    _, _, tmp, _ = run
    store, db = str(tmp / "s.zarr"), str(tmp / "four.duckdb")
    procs = [subprocess.Popen([sys.executable, "-m", "sn_store", "search", "--store", store, "--db", db, "--again"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [e for _, e in outs]
    run_ids = {o.strip() for o, _ in outs}
    assert len(run_ids) == 4
    res = sn("sql", "SELECT run_id, count(*) AS n FROM neurons GROUP BY run_id", "--db", db, "--csv")
    counts = dict(line.replace('"', "").split(",") for line in res.stdout.split()[1:])
    assert counts == {r: str(4 * 256) for r in run_ids}
    res = sn("sql", "SELECT count(*) AS n FROM evaluations", "--db", db, "--csv")
    assert res.stdout.split()[1] == str(4 * 8)  # model, sn, sn_ensemble, sav on probe and eval

    # Without --again, the same store and settings give the latest of those runs back, and say so: no fifth run.
    res = sn("search", "--store", store, "--db", db)
    assert res.returncode == 0 and res.stdout.strip() in run_ids and "--again" in res.stderr, res.stderr
    res = sn("sql", "SELECT count(*) AS n FROM runs", "--db", db, "--csv")
    assert res.stdout.split()[1] == "4"


HEAVY = ("torch", "transformers", "xarray", "dask", "prefect")


def heavy_imports(*argv: str) -> list[str]:
    """The heavy packages a fresh interpreter has imported after running the CLI with `argv` (or only importing it)."""
    code = "import sys\nfrom sn_store.cli import app\n"
    if argv:
        code += f"try:\n    app({list(argv)!r}, standalone_mode=False)\nexcept SystemExit:\n    pass\n"
    code += f"print([m for m in {HEAVY!r} if m in sys.modules])"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return eval(res.stdout.strip().splitlines()[-1])


def test_quick_commands_import_nothing_heavy(run):
    """`import sn_store.cli`, `sn --help`, `sql`, `top`, `datasets list`, `models list`, `runs`: no torch & co."""
    _, db, _, _ = run
    assert heavy_imports() == []
    for argv in (["--help"], ["sql", "SELECT 1", "--db", db], ["top", "--db", db], ["datasets", "list"],
                 ["models", "list"], ["runs", "--db", db]):
        assert heavy_imports(*argv) == [], argv


def test_the_python_api_still_loads_on_first_use():
    """`sn_store.extract` and `sn_store.search` are functions even though their submodules (imported by this file)
    have the same names; the other API names load on first use."""
    import sn_store
    import sn_store.extract
    import sn_store.search

    assert callable(sn_store.extract) and callable(sn_store.search)
    assert sn_store.extract.__module__ == "sn_store.extract" and sn_store.open_store.__module__ == "sn_store.store"
    assert {"extract", "search", "open_store", "load_model", "load_dataset"} <= set(dir(sn_store))
    with pytest.raises(AttributeError):
        sn_store.no_such_name  # noqa: B018


EXTRACT = ["extract", "-m", "tiny-llava", "-d", "shapes-exist"]
BAD_INPUT = {
    "mistyped built-in model": (["extract", "-m", "tiny-lava", "-d", "shapes-exist"], "did you mean tiny-llava?"),
    "missing local folder": (["extract", "-m", "./no-such-model", "-d", "shapes-exist"], "does not exist"),
    "weights dtype": ([*EXTRACT, "--model-dtype", "int8"], "use one of float32, bfloat16, float16"),
    "backwards layers": ([*EXTRACT, "--layers", "3-1"], "runs backwards (write 1-3)"),
    "backwards layers, probe": (["probe", "--layers", "3-1"], "runs backwards"),
    "grid of no points": (["search", "--store", "x.zarr", "--n-grid", "0"], "'--n-grid'"),
    "top of nothing": (["top", "--k", "0"], "'--k'"),
    "top of a layer counted from the end": (["top", "--layers", "-1"], "give layer numbers"),
    "bad cron": (["serve", "--cron", "bad"], "Invalid cron string"),
    "bad cron from the environment": (["serve"], "Invalid cron string"),
}


def sn_main(monkeypatch, capsys, argv: list[str]) -> tuple[int, str, str]:
    """Run the CLI's entry point in this process: (exit code, stdout, stderr)."""
    from sn_store.cli import main

    monkeypatch.setattr(sys, "argv", ["sn", *argv])
    with pytest.raises(SystemExit) as stop:
        main()
    out = capsys.readouterr()
    return stop.value.code, out.out, out.err


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_before_any_work(case, monkeypatch, capsys):
    argv, says = BAD_INPUT[case]
    monkeypatch.setenv("SN_REPROBE_CRON", "every day")
    code, _, err = sn_main(monkeypatch, capsys, argv)
    assert code != 0 and says in err and len(err.strip().splitlines()) == 1, err


def test_a_device_this_machine_lacks(monkeypatch, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = sn_main(monkeypatch, capsys, [*EXTRACT, "--device", "cuda"])
    assert code != 0 and "CUDA is not available" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("command", [["probe"], ["serve"], ["demo"]])
def test_a_stopped_prefect_server_is_named(command, monkeypatch, capsys):
    from tests.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}/api"
    monkeypatch.setenv("PREFECT_API_URL", url)
    code, _, err = sn_main(monkeypatch, capsys, command)
    assert code != 0 and f"PREFECT_API_URL={url}: no Prefect server answers" in err, err
    assert len(err.strip().splitlines()) == 1


def csv_rows(text: str) -> list[dict]:
    import csv
    import io

    return list(csv.DictReader(io.StringIO(text)))


def test_top_sorts_by_eval_and_filters_by_site_and_layer(run, monkeypatch, capsys):
    """Against the run's every neuron row: the best 3 mlp neurons of layer 1 by held-out accuracy."""
    from sn_store.leaderboard import run_neurons

    run_id, db, _, _ = run
    code, out, err = sn_main(monkeypatch, capsys, ["top", "--db", db, "--by", "eval", "--sites", "mlp", "--layers", "1",
                                              "--k", "3", "--csv"])
    assert code == 0, err
    rows = csv_rows(out)
    everything = run_neurons(db, run_id).to_pylist()
    wanted = sorted((r for r in everything if r["site"] == "mlp" and r["layer"] == 1),
                    key=lambda r: (-r["eval_acc"], -r["eval_bal_acc"]))[:3]
    assert [(r["site"], int(r["layer"])) for r in rows] == [("mlp", 1)] * 3
    assert [float(r["eval_acc"]) for r in rows] == pytest.approx([r["eval_acc"] for r in wanted])
    assert all(int(r["rank"]) >= 1 for r in rows)  # the run-wide rank by probe accuracy rides along


@pytest.fixture(scope="module")
def artifact(run):
    from sn_store.export import export

    run_id, db, tmp, _ = run
    return export(run_id, tmp / "art", db=db), db, tmp


def test_runs_and_artifacts_list_what_exists(artifact, run, monkeypatch, capsys):
    import json

    path, db, _ = artifact
    run_id = run[0]
    code, out, err = sn_main(monkeypatch, capsys, ["runs", "--db", db, "--csv"])
    assert code == 0, err
    (row,) = csv_rows(out)
    assert (row["run_id"], row["dataset"], row["mode"]) == (run_id, "shapes-exist", "grid")
    early = json.loads((path / "manifest.json").read_text())["metrics"]["early_exit_eval"]["acc"]
    assert float(row["early_exit"]) == pytest.approx(early)
    code, out, err = sn_main(monkeypatch, capsys, ["artifacts", "--db", db, "--csv"])
    assert code == 0, err
    (row,) = csv_rows(out)
    assert (row["artifact"], row["run_id"], row["on_disk"]) == (str(path.resolve()), run_id, "true")
    assert float(row["early_exit"]) == pytest.approx(early) and row["n_neurons"] == "1" and "speedup_q3" in row
    code, out, _ = sn_main(monkeypatch, capsys, ["runs", "--db", db, "--dataset", "no-such-dataset"])
    assert code == 0 and run_id not in out


def test_predict_reports_each_split_and_where_the_neurons_were_chosen(artifact, monkeypatch, capsys):
    """The probe row agrees with the search's probe accuracy of the exported neuron, the eval row with export's
    own check on the eval split: two independent computations (stored activations vs. the truncated model)."""
    import json

    import yaml

    from sn_store.leaderboard import top

    path, db, tmp = artifact
    spec = tmp / "shapes.yaml"
    spec.write_text(yaml.safe_dump(small_spec(n=32).model_dump(mode="json", exclude_none=True)))
    code, out, err = sn_main(monkeypatch, capsys, ["predict", str(path), "--dataset", str(spec), "--db", db])
    assert code == 0, err
    lines = {line.split()[1]: line for line in out.splitlines() if line.split()[1:2] in (["probe"], ["eval"])}
    best = top(db, k=1).to_pylist()[0]
    early = json.loads((path / "manifest.json").read_text())["metrics"]["early_exit_eval"]["acc"]
    assert f"{best['probe_acc']:.3f}" in lines["probe"] and "chosen on it" in lines["probe"]
    assert f"{early:.3f}" in lines["eval"]
    assert "chosen on the probe split of shapes-exist" in out


def test_the_readme_extract_examples_follow_one_another(tmp_path, monkeypatch, capsys, sn_home):
    """The README's first CLI extraction, then its Python block, in that order (a new user following it): the Python
    call reuses the CLI's store, the one with other arguments gets its own, the float32 mean is finite."""
    from pathlib import Path

    import numpy as np

    import sn_store

    section = (Path(__file__).parents[1] / "README.md").read_text().split("## Extracting activations", 1)[1]
    command = section.split("```bash\n", 1)[1].splitlines()[0].split("#")[0].split()
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.setenv("SN_HOME", str(tmp_path / "home"))  # a workspace of its own, sharing the built tiny models
    (tmp_path / "home").mkdir()
    (sn_home / "models").mkdir(exist_ok=True)
    (tmp_path / "home" / "models").symlink_to(sn_home / "models")
    monkeypatch.chdir(tmp_path)
    assert command[0] == "sn"
    exit_code, _, err = sn_main(monkeypatch, capsys, command[1:])
    assert exit_code == 0, err
    (cli_store,) = (tmp_path / "home" / "stores").glob("*.zarr")
    namespace: dict = {}
    exec(code, namespace)
    assert Path(namespace["path"]).resolve() == cli_store.resolve()
    assert np.isfinite(namespace["ds"].activations.astype("float32").mean("sample").values).all()
    assert sn_store.open_store(namespace["small"]).attrs["sites"] == ["resid", "mlp"]
