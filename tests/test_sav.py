"""SAV baseline: the vectorised implementation against a plain one (loops over layers, heads and samples), its rows
in DuckDB, and the refusal of a store that cannot give head vectors."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import zarr

from sn_store import leaderboard
from sn_store.errors import SnError
from sn_store.evaluate import class_metrics
from sn_store.sav import fit_sav, majority_vote, sav_heads


def _cos(a, b):
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / max(na * nb, 1e-300)


def plain_sav(path: str, n_heads: int):
    """Mitra et al.'s recipe written as loops: one head, one sample at a time."""
    g = zarr.open_group(path, mode="r")
    acts = np.asarray(g["activations"][:], dtype=np.float64)
    sites = np.asarray(g["neuron_site"][:]).astype(object)
    attn = np.flatnonzero(sites == "attn")
    y = [int(v) for v in g["label"][:]]
    probe = [s == "probe" for s in np.asarray(g["split"][:]).astype(object)]
    k, n_h = len(g.attrs["classes"]), int(g.attrs["attn_heads"])
    d = len(attn) // n_h
    # Per-question options (ScienceQA): a class the question does not offer is never chosen. All offered without it.
    allowed = ([[bool(v) for v in row] for row in g["class_mask"][:]] if "class_mask" in set(g.array_keys())
               else [[True] * k for _ in y])
    scored = []  # (probe_acc, eval_acc, layer position, head, per-sample (pred, sims))
    for li in range(acts.shape[1]):
        for h in range(n_h):
            vec = [list(acts[i, li, attn[0] + h * d: attn[0] + (h + 1) * d]) for i in range(len(y))]
            means = []
            for c in range(k):
                members = [vec[i] for i in range(len(y)) if probe[i] and y[i] == c]
                means.append([sum(col) / len(members) for col in zip(*members, strict=True)] if members else [0.0] * d)
            per_sample = []
            for i in range(len(y)):
                sims = [_cos(vec[i], means[c]) for c in range(k)]
                options = [c for c in range(k) if allowed[i][c]]
                per_sample.append((max(options, key=lambda c, s=sims: (s[c], -c)), sims))
            hits = [per_sample[i][0] == y[i] for i in range(len(y))]
            p_acc = sum(h_ for h_, p in zip(hits, probe, strict=True) if p) / sum(probe)
            e_acc = sum(h_ for h_, p in zip(hits, probe, strict=True) if not p) / (len(y) - sum(probe))
            scored.append((p_acc, e_acc, li, h, per_sample))
    order = sorted(range(len(scored)), key=lambda j: (-scored[j][0], j))[:n_heads]
    pred = []
    for i in range(len(y)):
        votes, strength = [0] * k, [0.0] * k
        for j in order:
            c, sims = scored[j][4][i]
            votes[c] += 1
            strength[c] += sims[c]
        best = max(votes)
        pred.append(max((c for c in range(k) if votes[c] == best), key=lambda c: strength[c]))
    return [scored[j][:4] for j in order], np.asarray(pred), np.asarray(y), np.asarray(probe)


def test_sav_matches_plain_loops(sn_tiny_store):
    result = fit_sav(sn_tiny_store, n_heads=5)
    heads, pred, y, probe = plain_sav(sn_tiny_store, 5)
    layers = list(zarr.open_group(sn_tiny_store, mode="r")["layer"][:])
    got = result.heads.to_pylist()
    assert [(r["layer"], r["head"]) for r in got] == [(layers[li], h) for _, _, li, h in heads]
    np.testing.assert_allclose([r["probe_acc"] for r in got], [p for p, *_ in heads], rtol=1e-6)
    np.testing.assert_allclose([r["eval_acc"] for r in got], [e for _, e, *_ in heads], rtol=1e-6)
    np.testing.assert_array_equal(result.pred, pred)
    by_split = {r["split"]: r for r in result.evaluations}
    assert by_split["eval"]["acc"] == pytest.approx(class_metrics(pred[~probe], y[~probe], 2)["acc"])
    assert by_split["probe"]["acc"] == pytest.approx((pred[probe] == y[probe]).mean())
    assert by_split["probe"]["acc"] > 0.5  # the shipped model's heads carry the task


def masked_store(path, mask: bool = True, attn_site: bool = True) -> tuple[str, np.ndarray]:
    """A store as another program writes it (plain zarr): four options A-D, but a third of the questions offer only
    two or three of them (`class_mask`, as ScienceQA's). Two layers; an attn site of 3 heads x 4 dims beside a resid
    site. Each head sees its class weakly, and leans towards a class the question does not offer, so the mask
    changes the heads' choices. `attn_site=False`: the resid site alone (a store extracted without attn)."""
    rng = np.random.default_rng(3)
    n, k, n_h, d, width = 60, 4, 3, 4, 5
    y = np.arange(n) % k
    allowed = np.ones((n, k), dtype=bool)
    for i in range(0, n, 3):  # drop one or two options this question does not have (never its answer)
        others = [c for c in range(k) if c != y[i]]
        allowed[i, rng.choice(others, size=1 + i % 2, replace=False)] = False
    centre = rng.standard_normal((2, n_h, k, d))  # (layer, head, class, dim)
    attn = np.empty((n, 2, n_h, d))
    for i in range(n):
        decoy = next(c for c in range(k) if not allowed[i, c]) if not allowed[i].all() else y[i]
        attn[i] = 0.6 * centre[:, :, y[i]] + 0.5 * centre[:, :, decoy] + rng.standard_normal((2, n_h, d))
    acts = np.concatenate([rng.standard_normal((n, 2, width)), attn.reshape(n, 2, n_h * d)], axis=2)
    sites = ["resid"] * width + ["attn"] * (n_h * d)
    index = np.r_[np.arange(width), np.arange(n_h * d)]
    if not attn_site:
        acts, sites, index = acts[:, :, :width], sites[:width], index[:width]
    split = np.array(["probe" if (i // k) % 2 == 0 else "eval" for i in range(n)], dtype=object)  # every class in both
    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    arrays = [("activations", acts.astype(np.float32), ("sample", "layer", "neuron")),
              ("label", y.astype(np.int8), ("sample",)), ("split", split, ("sample",)),
              ("layer", np.array([2, 5], dtype=np.int64), ("layer",)),
              ("neuron_site", np.array(sites, dtype=object), ("neuron",)),
              ("neuron_index", index.astype(np.int32), ("neuron",))]
    if mask:
        arrays.append(("class_mask", allowed, ("sample", "class")))
    for name, data, dims in arrays:
        arr = g.create_array(name, shape=data.shape, dtype=str if data.dtype == object else data.dtype,
                             chunks=data.shape, dimension_names=dims)
        arr[...] = data
    g.attrs.update({"classes": ["A", "B", "C", "D"], "sites": ["resid", "attn"] if attn_site else ["resid"],
                    "complete": True, "attn_heads": n_h})
    return str(path), allowed


def test_sav_with_per_question_options_matches_plain_loops(tmp_path):
    path, allowed = masked_store(tmp_path / "options.zarr")
    result = fit_sav(path, n_heads=4)
    heads, pred, y, probe = plain_sav(path, 4)
    got = result.heads.to_pylist()
    assert [(r["layer"], r["head"]) for r in got] == [([2, 5][li], h) for _, _, li, h in heads]
    np.testing.assert_allclose([r["probe_acc"] for r in got], [p for p, *_ in heads], rtol=1e-6)
    np.testing.assert_allclose([r["eval_acc"] for r in got], [e for _, e, *_ in heads], rtol=1e-6)
    np.testing.assert_array_equal(result.pred, pred)
    assert allowed[np.arange(len(pred)), result.pred].all()  # never an option the question lacks
    by_split = {r["split"]: r for r in result.evaluations}
    for s, sel in (("probe", probe), ("eval", ~probe)):
        assert by_split[s]["acc"] == pytest.approx((pred[sel] == y[sel]).mean())
    # The mask is what this test is about: without it, heads and votes come out otherwise.
    free_path, _ = masked_store(tmp_path / "free.zarr", mask=False)
    free = fit_sav(free_path, n_heads=4)
    free_heads, free_pred, _, _ = plain_sav(free_path, 4)
    np.testing.assert_array_equal(free.pred, free_pred)
    assert (free.pred != result.pred).any() and not allowed[np.arange(len(pred)), free.pred].all()
    assert [p for p, *_ in free_heads] != [p for p, *_ in heads]


def test_vote_tie_goes_to_the_larger_summed_similarity():
    preds = np.array([[0, 1, 0, 1]])
    sims = np.zeros((1, 4, 2))
    sims[0, :, 0], sims[0, :, 1] = [0.5, 0.1, 0.2, 0.0], [0.0, 0.4, 0.0, 0.9]  # class 0 sums 0.7, class 1 1.3
    assert majority_vote(preds, sims, 2).tolist() == [1]
    assert majority_vote(np.array([[0, 0, 1]]), np.zeros((1, 3, 2)) + [0, 1.0], 2).tolist() == [0]  # 2 votes win


def test_search_records_sav(sn_tiny_run, sn_tiny_store):
    db, run_id = sn_tiny_run
    heads = sav_heads(db, run_id).to_pylist()
    expected = fit_sav(sn_tiny_store).heads.to_pylist()
    assert len(heads) == len(expected) == min(20, 4 * 4)  # sn-tiny-llava: 4 layers x 4 heads
    assert [(h["rank"], h["layer"], h["head"]) for h in heads] == [(e["rank"], e["layer"], e["head"]) for e in expected]
    rows = {r["split"]: r for r in leaderboard.run_evaluations(db, run_id) if r["method"] == "sav"}
    assert set(rows) == {"probe", "eval"} and rows["eval"]["n"] == 32


def test_sav_refused_without_attn_heads(sn_tiny_store, tmp_path, capsys):
    import shutil

    from sn_store import search

    copy = tmp_path / "no-heads.zarr"
    shutil.copytree(sn_tiny_store, copy)
    g = zarr.open_group(str(copy), mode="r+")
    g.attrs.pop("attn_heads") if hasattr(g.attrs, "pop") else g.attrs.__delitem__("attn_heads")
    db = str(tmp_path / "x.duckdb")
    with pytest.raises(SnError, match="attn_heads"):
        search(str(copy), db=db, sav=True, progress=False)
    capsys.readouterr()
    run_id = search(str(copy), db=db, progress=False)  # not asked for: skipped, and said so
    note = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(note) == 1 and "SAV" in note[0] and "`attn_heads`" in note[0] and str(copy) in note[0], note
    methods = {r["method"] for r in leaderboard.run_evaluations(db, run_id)}
    assert "sav" not in methods and "sn" in methods
    search(str(copy), db=db, progress=False, sav=False, reuse=False)  # --no-sav: asked not to, nothing to say
    assert "SAV" not in capsys.readouterr().err


def test_sav_on_a_store_without_the_attn_site(tmp_path, capsys):
    """`sn search --sav` is refused in one line naming the missing site; unasked, such a store has nothing to say
    (SAV is not its kind of baseline)."""
    from sn_store import search

    store, _ = masked_store(tmp_path / "resid-only.zarr", attn_site=False)
    db = tmp_path / "sn.duckdb"
    res = subprocess.run([sys.executable, "-m", "sn_store", "search", "--store", store, "--db", str(db), "--sav"],
                         capture_output=True, text=True)
    assert res.returncode != 0 and res.stdout == ""
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert "SAV needs the `attn` site" in lines[0] and "--sites" in lines[0] and "resid-only.zarr" in lines[0]
    with pytest.raises(SnError, match="`attn` site"):
        fit_sav(store)
    run_id = search(store, db=str(db), progress=False)
    assert "SAV" not in capsys.readouterr().err
    assert "sav" not in {r["method"] for r in leaderboard.run_evaluations(str(db), run_id)}
