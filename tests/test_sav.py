"""SAV baseline: the vectorised implementation against a plain one (loops over layers, heads and samples), its rows
in DuckDB, and the refusal of a store that cannot give head vectors."""

from __future__ import annotations

import math

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
    scored = []  # (probe_acc, eval_acc, layer position, head, per-sample (pred, sims))
    for li in range(acts.shape[1]):
        for h in range(n_h):
            vec = [list(acts[i, li, attn[0] + h * d: attn[0] + (h + 1) * d]) for i in range(len(y))]
            means = []
            for c in range(k):
                members = [vec[i] for i in range(len(y)) if probe[i] and y[i] == c]
                means.append([sum(col) / len(members) for col in zip(*members, strict=True)])
            per_sample = []
            for i in range(len(y)):
                sims = [_cos(vec[i], means[c]) for c in range(k)]
                per_sample.append((max(range(k), key=lambda c, s=sims: (s[c], -c)), sims))
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


def test_sav_refused_without_attn_heads(sn_tiny_store, tmp_path):
    import shutil

    from sn_store import search

    copy = tmp_path / "no-heads.zarr"
    shutil.copytree(sn_tiny_store, copy)
    g = zarr.open_group(str(copy), mode="r+")
    g.attrs.pop("attn_heads") if hasattr(g.attrs, "pop") else g.attrs.__delitem__("attn_heads")
    with pytest.raises(SnError, match="attn_heads"):
        search(str(copy), db=str(tmp_path / "x.duckdb"), sav=True, progress=False)
    run_id = search(str(copy), db=str(tmp_path / "x.duckdb"), progress=False)  # not asked for: skipped
    methods = {r["method"] for r in leaderboard.run_evaluations(str(tmp_path / "x.duckdb"), run_id)}
    assert "sav" not in methods and "sn" in methods
