"""Bad input through the real CLI: non-zero exit, a one-line cause naming the sample or field, and no store."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from PIL import Image


def run_sn(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sn_store", *args], capture_output=True, text=True, cwd=cwd)


def dataset(tmp_path, rows, **spec_extra):
    (tmp_path / "images").mkdir(exist_ok=True)
    for r in rows:
        if r.get("make", True):
            Image.new("RGB", (16, 16), "red").save(tmp_path / r["image"])
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "make"}) + "\n"
                                              for r in rows))
    spec = {"name": "bad", "format": "jsonl", "source": "d.jsonl", "classes": ["no", "yes"], **spec_extra}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    return str(tmp_path / "spec.yaml")


def good_rows(n=6):
    return [{"id": f"s{i}", "image": f"images/{i}.png", "question": "Q?", "answer": ["no", "yes"][i % 2]}
            for i in range(n)]


def corrupt(tmp_path):
    rows = good_rows()
    (tmp_path / "images").mkdir()
    rows[3]["make"] = False
    (tmp_path / rows[3]["image"]).write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return dataset(tmp_path, rows)


def missing(tmp_path):
    rows = good_rows()
    rows[2]["make"] = False
    return dataset(tmp_path, rows)


def bad_label(tmp_path):
    rows = good_rows()
    rows[4]["answer"] = "maybe"
    return dataset(tmp_path, rows)


def empty(tmp_path):
    return dataset(tmp_path, [])


def one_class(tmp_path):
    return dataset(tmp_path, [dict(r, answer="yes") for r in good_rows()])


def same_token(tmp_path):
    return dataset(tmp_path, good_rows(), verbalizers={"no": "Yes", "yes": "Yes please"})


def unknown_key(tmp_path):
    return dataset(tmp_path, good_rows(), colour="red")


def no_question(tmp_path):
    rows = good_rows()
    del rows[1]["question"]
    return dataset(tmp_path, rows)


CASES = {
    "missing image": (missing, "sample s2: image file .*2.png not found"),
    "unreadable image": (corrupt, "sample s3: unreadable image"),
    "label not in classes": (bad_label, "sample s4: label 'maybe' is not one of the classes"),
    "empty dataset": (empty, "dataset bad: no samples"),
    "one class": (one_class, "every sample has the label 'yes'"),
    "verbalizers share a first token": (same_token, "classes 'no' and 'yes' have verbalizers that begin with the "
                                                    "same token"),
    "unknown spec key": (unknown_key, "colour: unknown key"),
    "missing field": (no_question, "sample s1: missing field 'question'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_dataset_input(case, tmp_path):
    make, pattern = CASES[case]
    spec = make(tmp_path)
    store = tmp_path / "store.zarr"
    res = run_sn("extract", "--model", "tiny-llava", "--dataset", spec, "--store", str(store))
    assert res.returncode == 1
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert __import__("re").search(pattern, err), err
    assert not store.exists()


def test_unknown_model_type(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    res = run_sn("extract", "--model", str(tmp_path / "m"), "--dataset", "shapes-exist", "--store",
                 str(tmp_path / "s.zarr"))
    assert res.returncode == 1
    assert "unknown model type 'gpt2'" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s.zarr").exists()


def test_help_explains_every_command():
    res = run_sn("--help")
    assert res.returncode == 0 and "extract" in res.stdout and "demo" in res.stdout
    res = run_sn("extract", "--help")
    assert res.returncode == 0 and "--layers" in res.stdout and "resume" in res.stdout
