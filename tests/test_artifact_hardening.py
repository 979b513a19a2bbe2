"""Issue 9, the artifact side, tried as a hostile user would: `sn export` never deletes what is not its own artifact
and replaces its own only by rename; a killed export's folder never loads and is cleaned up; loading runs no code
from the artifact, follows no link, and refuses an edited manifest body; a broken manifest or weights file is a
one-line error naming the file and field."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from sn_store import artifact as art
from sn_store import manifest as mf
from sn_store.artifact import EarlyExitClassifier, staging
from sn_store.datasets import load_dataset
from sn_store.errors import SnError
from sn_store.export import export
from sn_store.extract import extract
from sn_store.manifest import MANIFEST, Manifest, sha256, write_manifest
from sn_store.search import search
from tests.conftest import adapter, small_spec


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("harden")
    store = extract(adapter("tiny-llava"), load_dataset(small_spec(n=24)), store=str(tmp / "s.zarr"), progress=False)
    db = str(tmp / "sn.duckdb")
    run_id = search(store, db=db, ensemble_k=2, progress=False)
    good = export(run_id, tmp / "good", db=db)  # verified: the artifact the attacks start from
    return {"run": run_id, "db": db, "tmp": tmp, "good": good}


def tree(path: Path) -> dict[str, bytes]:
    """Every file under `path` with its bytes (to show that nothing was touched)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def copy_of(run, name: str) -> Path:
    import shutil

    dest = run["tmp"] / name
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(run["good"], dest)
    return dest


def edit_manifest(path: Path, reseal: bool, **update) -> None:
    """Change manifest fields; `reseal` recomputes every digest, as an attacker who read the format would."""
    m = Manifest.model_validate_json((path / MANIFEST).read_text()).model_copy(update=update)
    if reseal:
        write_manifest(path, m)
    else:
        (path / MANIFEST).write_text(m.model_dump_json(indent=2))


def one_line_error(fn, match: str) -> str:
    with pytest.raises(SnError, match=match) as exc:
        fn()
    assert "\n" not in str(exc.value)
    return str(exc.value)


# --- item 1: the export destination ----------------------------------------------------------------------------
def test_export_refuses_what_is_not_its_artifact_and_touches_nothing(run, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "v").mkdir(parents=True)
    (home / "v" / "thesis.txt").write_text("four years")
    (home / "notes.txt").write_text("mine")
    (home / "link").symlink_to(home / "v")
    good = copy_of(run, "with-extra")
    (good / "thesis.txt").write_text("put in the artifact folder by hand")
    before, before_good = tree(home), tree(good)
    monkeypatch.chdir(home)
    cases = [(home / "v", "not an sn_store artifact"), (home / "notes.txt", "existing file"),
             (Path("."), "current folder"), (Path(".."), "current folder"), (home / "link", "symbolic link"),
             (good, "not an sn_store artifact")]
    for out, message in cases:
        one_line_error(lambda out=out: export(run["run"], out, db=run["db"], verify=False), message)
    assert tree(home) == before and tree(good) == before_good
    assert sorted(p.name for p in home.iterdir()) == ["link", "notes.txt", "v"]  # no staging folder left either


def test_sn_export_and_the_export_flow_go_through_the_same_check(run, tmp_path, monkeypatch):
    from sn_store.flows.export import export_task

    from sn_store import cli

    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "thesis.txt").write_text("four years")
    monkeypatch.chdir(tmp_path)
    one_line_error(lambda: cli.export(out=".", run=run["run"], db=run["db"]), "current folder")
    one_line_error(lambda: export_task.fn(run["run"], "v", None, 1, run["db"]), "not an sn_store artifact")
    assert tree(tmp_path) == {"v/thesis.txt": b"four years"}


def test_export_replaces_its_own_artifact_by_rename(run, tmp_path):
    out = tmp_path / "art"
    (tmp_path / "neighbour.txt").write_text("beside --out")
    export(run["run"], out, db=run["db"], verify=False)
    first = mf.verify(out)
    inode = out.stat().st_ino
    export(run["run"], out, db=run["db"], ensemble=2, verify=False)
    second = mf.verify(out)
    assert len(first.neurons) == 1 and len(second.neurons) == 2 and out.stat().st_ino != inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "neighbour.txt"]
    assert (tmp_path / "neighbour.txt").read_text() == "beside --out"
    fresh = tmp_path / "fresh"
    fresh.mkdir()  # the mode any new folder gets here (the umask's), not mkdtemp's 0700
    assert stat.S_IMODE(out.stat().st_mode) == stat.S_IMODE(fresh.stat().st_mode)


@pytest.mark.parametrize("exchange", [True, False])
def test_staging_swaps_an_artifact_in_and_keeps_it_on_failure(tmp_path, monkeypatch, exchange):
    """Both ways of replacing (one atomic exchange, or two renames where the system has none)."""
    if not exchange:
        monkeypatch.setattr(art, "_exchange", lambda a, b: False)
    out = tmp_path / "a"
    out.mkdir()
    (out / "x.bin").write_text("old")
    (out / MANIFEST).write_text(json.dumps({"format": mf.FORMAT, "files": {"x.bin": sha256(out / "x.bin")}}))
    with pytest.raises(RuntimeError), staging(out) as tmp:
        (tmp / "x.bin").write_text("half")
        raise RuntimeError("build failed")
    assert (out / "x.bin").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a"]
    with staging(out) as tmp:
        (tmp / "x.bin").write_text("new")
        (tmp / MANIFEST).write_text("{}")
    assert (out / "x.bin").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["a"]


def test_a_killed_export_never_loads_and_is_cleaned_at_the_next_export(run, tmp_path):
    out = tmp_path / "art"
    # A real export, SIGKILLed after it wrote the artifact into its staging folder but before its own check.
    code = ("import os, signal, sys; import sn_store.export as e; "
            "e.verify_exit = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL); "
            "e.export(sys.argv[1], sys.argv[2], db=sys.argv[3])")
    res = subprocess.run([sys.executable, "-c", code, run["run"], str(out), run["db"]], capture_output=True)
    assert res.returncode == -signal.SIGKILL
    (left,) = tmp_path.iterdir()
    assert left.name.startswith(".art.staging-") and (left / MANIFEST).exists() and not out.exists()
    one_line_error(lambda: EarlyExitClassifier.load(left, device="cpu"), "staging folder of an export")
    renamed = tmp_path / "renamed"
    left.rename(renamed)  # a user who renames it does not make it finished
    one_line_error(lambda: EarlyExitClassifier.load(renamed, device="cpu"), "did not finish")
    renamed.rename(left)

    live = tmp_path / ".art.staging-live1234"  # another export still running: it holds the lock on its folder
    live.mkdir()
    mine = [tmp_path / ".art.staging-notes", tmp_path / ".art.staging-abcd1234-old", tmp_path / ".art.staging-x"]
    for p in mine:  # look-alikes export did not make (a user's folder; an artifact a killed swap set aside) stay
        p.mkdir()
        (p / "thesis.txt").write_text("mine")
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        export(run["run"], out, db=run["db"], verify=False)
    finally:
        os.close(fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "art", *(p.name for p in mine)])
    assert all((p / "thesis.txt").read_text() == "mine" for p in mine)
    assert EarlyExitClassifier.load(out, device="cpu").manifest.finished


# --- item 4: nothing runs, nothing is followed, the manifest body is covered ------------------------------------
EVIL = """from pathlib import Path
Path({marker!r}).write_text("artifact code ran")
from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
class EvilConfig(LlavaConfig): pass
class EvilModel(LlavaForConditionalGeneration): pass
class EvilProcessor(LlavaProcessor): pass
"""


def plant_code(path: Path, marker: Path, model_type: str = "llava") -> None:
    (path / "evil.py").write_text(EVIL.format(marker=str(marker)))
    auto = {"AutoConfig": "evil.EvilConfig", "AutoModelForImageTextToText": "evil.EvilModel",
            "AutoProcessor": "evil.EvilProcessor", "AutoTokenizer": ["evil.EvilProcessor", None]}
    for name in ("config.json", "tokenizer_config.json", "processor_config.json"):
        data = json.loads((path / name).read_text())
        (path / name).write_text(json.dumps({**data, "auto_map": auto, "model_type": model_type}
                                            if name == "config.json" else {**data, "auto_map": auto}))
    edit_manifest(path, reseal=True, model=mf.read_manifest(path).model.model_copy(update={"model_type": model_type}))


def test_auto_map_code_in_an_artifact_is_never_imported(run, monkeypatch):
    marker = run["tmp"] / "ran.txt"
    evil = copy_of(run, "evil")
    plant_code(evil, marker)
    one_line_error(lambda: EarlyExitClassifier.load(evil, device="cpu"), "evil.py is code")
    # Even with the code-file check out of the way, transformers is told never to run it.
    monkeypatch.setattr(mf, "CODE_SUFFIXES", ())
    clf = EarlyExitClassifier.load(evil, device="cpu")
    assert type(clf.adapter.model).__name__ == "LlavaForConditionalGeneration"
    # An unregistered model type is refused before transformers reads anything.
    other = copy_of(run, "evil-type")
    plant_code(other, marker, model_type="evil_vlm")
    one_line_error(lambda: EarlyExitClassifier.load(other, device="cpu"), "config.json: unknown model type 'evil_vlm'")
    assert not marker.exists() and not any("evil" in name for name in sys.modules)


def test_links_and_special_files_inside_an_artifact_are_refused(run, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    for name, make in [("notes.txt", lambda p: p.symlink_to(secret)), ("sub", lambda p: p.symlink_to(tmp_path)),
                       ("pipe", os.mkfifo)]:
        bad = copy_of(run, "linked")
        make(bad / name)
        m = mf.read_manifest(bad)
        files = {**m.files, name: sha256(secret)}  # the attacker lists it, with a matching digest
        body = m.model_copy(update={"files": files, "digest": None})
        (bad / MANIFEST).write_text(body.model_copy(update={"digest": body.body_digest()}).model_dump_json())
        one_line_error(lambda bad=bad: EarlyExitClassifier.load(bad, device="cpu"),
                       f"{name} is (a symbolic link|not a plain file)")


def test_an_edited_manifest_body_is_refused(run):
    path = export(run["run"], run["tmp"] / "recorded", db=run["db"], verify=False)
    m = mf.verify(path)
    con = duckdb.connect(run["db"], read_only=True)
    row = con.execute("SELECT manifest_digest, sha256 FROM artifacts WHERE path = ?", [str(path.resolve())]).fetchall()
    con.close()
    assert row == [(m.digest, sha256(path / MANIFEST))] and m.digest == m.body_digest()
    assert all(d.startswith("sha256:") and len(d) == 71 for d in [*m.files.values(), m.digest, row[0][1]])
    assert EarlyExitClassifier.load(path, device="cpu", db=run["db"]).recorded is True

    flipped = [m.neurons[0].model_copy(update={"polarity": -m.neurons[0].polarity})]
    for update in [{"neurons": flipped}, {"classes": m.classes[::-1]},
                   {"neurons": [m.neurons[0].model_copy(update={"threshold": m.neurons[0].threshold + 1})]}]:
        edit_manifest(path, reseal=False, **update)  # a plain edit: the body no longer matches its digest
        one_line_error(lambda: EarlyExitClassifier.load(path, device="cpu"), "field digest does not match")
        edit_manifest(path, reseal=True, **update)  # digests recomputed: self-consistent, but not what was exported
        assert EarlyExitClassifier.load(path, device="cpu").recorded is None
        one_line_error(lambda: EarlyExitClassifier.load(path, device="cpu", db=run["db"]), "manifest was edited")
        write_manifest(path, m)  # back to the exported body
    assert EarlyExitClassifier.load(path, device="cpu", db=run["db"]).recorded is True


def test_sn_predict_checks_the_workspace_database(run, monkeypatch, capsys):
    from PIL import Image

    from sn_store import cli

    path = export(run["run"], run["tmp"] / "predicted", db=run["db"], verify=False)
    image = run["tmp"] / "img.png"
    Image.new("RGB", (32, 32), "red").save(image)
    monkeypatch.setenv("SN_HOME", str(run["tmp"]))  # its sn.duckdb is the run's database
    cli.predict(str(path), image=[str(image)], question=["Is there a circle?"], device="cpu")
    assert capsys.readouterr().out.split("\t")[1].strip() in ("no", "yes")
    m = mf.verify(path)
    edit_manifest(path, reseal=True, neurons=[m.neurons[0].model_copy(update={"polarity": -m.neurons[0].polarity})])
    one_line_error(lambda: cli.predict(str(path), image=[str(image)], question=["q"], device="cpu"),
                   "manifest was edited")


# --- items 5 and 6: one-line errors from the manifest model ------------------------------------------------------
def raw_edit(fn):
    def damage(path: Path) -> None:
        data = json.loads((path / MANIFEST).read_text())
        fn(data)
        (path / MANIFEST).write_text(json.dumps(data))
    return damage


def garbage_weights(path: Path) -> None:
    (path / "model.safetensors").write_bytes(b"\xff" * 8 + b"not a header")
    write_manifest(path, mf.read_manifest(path))


def first_neuron(**update):
    return lambda path: edit_manifest(path, reseal=True, neurons=[
        mf.read_manifest(path).neurons[0].model_copy(update=update)], **(
        {"exit_layer": update["layer"]} if "layer" in update else {}))


@pytest.mark.parametrize("damage,message", [
    (raw_edit(lambda d: d.update(files=list(d["files"]))), "manifest.json: files: Input should be a valid dict"),
    (lambda p: (p / MANIFEST).write_text('{"format": 2, "metrics": ' + "[" * 100_000 + "]" * 100_000 + "}"),
     "manifest.json: nested too deeply"),
    (raw_edit(lambda d: d["metrics"].update(run=[{"a": {"b": {"c": 1}}}])), "manifest.json: metrics.run.0.a"),
    (raw_edit(lambda d: d.update(neurons=[])), "manifest.json: neurons: List should have at least 1 item"),
    (raw_edit(lambda d: d["neurons"][0].update(layer=d["exit_layer"] + 5)), "neurons.0.layer: .* past exit_layer"),
    (raw_edit(lambda d: d["neurons"][0].update(polarity=0)), r"neurons.0.polarity: Input should be -1 or 1"),
    (raw_edit(lambda d: d["neurons"][0].update(threshold="NaN")), "neurons.0.threshold"),
    (raw_edit(lambda d: d["model"].update(dtype="float64")), "manifest.json: model.dtype: Input should be"),
    (raw_edit(lambda d: d.update(activation_dtype="int8")), "manifest.json: activation_dtype: Input should be"),
    (raw_edit(lambda d: d.update(classes=[])), "manifest.json: classes: List should have at least 2 items"),
    (raw_edit(lambda d: d["files"].update({"../outside": d["files"]["config.json"]})), "manifest.json: files"),
    (raw_edit(lambda d: d.update(surprise=1)), "manifest.json: surprise: unknown field"),
    (lambda p: (p / MANIFEST).write_text("[1, 2"), "manifest.json: unreadable"),
    (first_neuron(layer=40), "config.json: field num_hidden_layers .* does not fit the manifest's exit_layer 40"),
    (first_neuron(index=10**6), "manifest.json: field neurons.0.index 1000000 is past the"),
    (garbage_weights, "model.safetensors: not a readable safetensors file"),
])
def test_broken_manifests_and_weights_are_one_line_errors(run, damage, message):
    bad = copy_of(run, "broken")
    damage(bad)
    where = one_line_error(lambda: EarlyExitClassifier.load(bad, device="cpu"), message)
    assert where.startswith(f"artifact {bad}")


def test_export_writes_the_manifest_through_the_model(run):
    m = mf.verify(run["good"])
    text = (run["good"] / MANIFEST).read_text()
    assert Manifest.model_validate_json(text) == m and m.finished and m.metrics.early_exit_eval["n"] == 12
    assert set(m.files) == {p.name for p in run["good"].iterdir()} - {MANIFEST}
