"""The search kernel against an independent brute force (plain Python loops over neurons, cuts and samples)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from sn_store.search_kernel import (
    COLUMNS,
    auroc,
    binary_metrics,
    decision_function,
    fit_block,
    predict,
    vote,
)

try:  # used only to cross-check the brute-force metrics themselves
    from sklearn import metrics as skm
except ImportError:  # pragma: no cover
    skm = None

METRICS = ("acc", "bal_acc", "f1", "mcc", "auroc")


# ------------------------------------------------------------------------------------------------------------------
# Brute force
# ------------------------------------------------------------------------------------------------------------------


def bf_predict(values, s, t):
    return [s * (float(v) - float(t)) > 0 for v in values]


def bf_counts(pred, truth):
    tp = sum(1 for p, q in zip(pred, truth) if p and q)
    fp = sum(1 for p, q in zip(pred, truth) if p and not q)
    tn = sum(1 for p, q in zip(pred, truth) if not p and not q)
    fn = sum(1 for p, q in zip(pred, truth) if not p and q)
    return tp, fp, tn, fn


def bf_bal(tp, fp, tn, fn):
    pos, neg = tp + fn, tn + fp
    if pos and neg:
        return (Fraction(tp, pos) + Fraction(tn, neg)) / 2
    if pos:
        return Fraction(tp, pos)
    if neg:
        return Fraction(tn, neg)
    return None


def bf_auroc(scores, truth):
    pos = [s for s, q in zip(scores, truth) if q]
    neg = [s for s, q in zip(scores, truth) if not q]
    if not pos or not neg:
        return math.nan
    u = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return u / (len(pos) * len(neg))


def bf_metrics(values, truth, s, t):
    n = len(values)
    if n == 0:
        return dict.fromkeys(METRICS, math.nan)
    tp, fp, tn, fn = bf_counts(bf_predict(values, s, t), truth)
    f1 = 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)
    den = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc = 0.0 if den == 0 else (tp * tn - fp * fn) / den
    return {
        "acc": (tp + tn) / n,
        "bal_acc": float(bf_bal(tp, fp, tn, fn)),
        "f1": f1,
        "mcc": mcc,
        "auroc": bf_auroc([s * float(v) for v in values], truth),
    }


def bf_candidates(values, mode, n_grid):
    """Every (s, t) the spec allows, in no particular order."""
    if mode == "grid":
        grid = np.linspace(-3, 3, n_grid).astype(np.float32)
        return [(s, g) for s in (1, -1) for g in grid]
    distinct = sorted({float(v) for v in values})
    out = []
    for s in (1, -1):
        out.append((s, np.float32(-np.inf)))
        out.append((s, np.float32(np.inf)))
        for lo, hi in zip(distinct[:-1], distinct[1:]):
            t = np.float32((lo + hi) / 2)
            if s == 1 and t == np.float32(hi):  # adjacent float32 values: keep lo on the negative side
                t = np.float32(lo)
            if s == -1 and t == np.float32(lo):
                t = np.float32(hi)
            out.append((s, t))
    return out


def bf_fit_neuron(values, truth, mode="exact", n_grid=61):
    med = float(np.median(np.asarray(values, dtype=np.float64)))
    best_key, best = None, None
    for s, t in bf_candidates(values, mode, n_grid):
        tp, fp, tn, fn = bf_counts(bf_predict(values, s, t), truth)
        key = (Fraction(tp + tn, len(values)), bf_bal(tp, fp, tn, fn), -abs(float(t) - med), s == 1, -float(t))
        if best_key is None or key > best_key:
            best_key, best = key, (s, t)
    return best


def brute_fit_block(acts, y, probe, model_pred, n_classes, mode="exact", n_grid=61):
    """Dict of rows in the kernel's column layout, computed neuron by neuron, sample by sample."""
    _n, m = acts.shape
    ev = ~probe
    classes = [1] if n_classes == 2 else list(range(n_classes))
    rows = {c: [] for c in COLUMNS}
    for j in range(m):
        col = acts[:, j]
        for k in classes:
            rows["neuron"].append(j)
            rows["class"].append(k)
            if not np.all(np.isfinite(col)):
                rows["polarity"].append(0)
                for c in COLUMNS[3:]:
                    rows[c].append(math.nan)
                continue
            vp = list(col[probe])
            tpos = [bool(v) for v in (y[probe] == k)]
            s, t = bf_fit_neuron(vp, tpos, mode, n_grid)
            rows["polarity"].append(s)
            rows["threshold"].append(float(t))
            pm = bf_metrics(vp, tpos, s, t)
            ve = list(col[ev])
            em = bf_metrics(ve, [bool(v) for v in (y[ev] == k)], s, t)
            for name in METRICS:
                rows["probe_" + name].append(pm[name])
                rows["eval_" + name].append(em[name])
            if ve:
                pred = bf_predict(ve, s, t)
                mk = [bool(v) for v in (model_pred[ev] == k)]
                rows["agreement"].append(sum(p == q for p, q in zip(pred, mk)) / len(ve))
            else:
                rows["agreement"].append(math.nan)
    return {c: np.array(v) for c, v in rows.items()}


def assert_same(got, want):
    assert set(got) == set(COLUMNS)
    n = len(want["neuron"])
    for c in COLUMNS:
        assert got[c].shape == (n,), c
    np.testing.assert_array_equal(got["neuron"], want["neuron"])
    np.testing.assert_array_equal(got["class"], want["class"])
    np.testing.assert_array_equal(got["polarity"], want["polarity"])
    assert got["polarity"].dtype == np.int8 and got["threshold"].dtype == np.float32
    # thresholds must be bit-identical (inf and NaN included)
    np.testing.assert_array_equal(got["threshold"], want["threshold"].astype(np.float32))
    for c in COLUMNS[4:]:
        assert got[c].dtype == np.float32, c
        np.testing.assert_allclose(got[c], want[c], rtol=2e-6, atol=2e-7, equal_nan=True, err_msg=c)


def check(acts, y, probe, model_pred=None, n_classes=2, mode="exact", n_grid=61, **kw):
    if model_pred is None:
        model_pred = np.random.default_rng(99).integers(0, n_classes, len(y))
    got = fit_block(acts, y, probe, model_pred, n_classes, mode=mode, n_grid=n_grid, **kw)
    want = brute_fit_block(acts, y, probe, model_pred, n_classes, mode=mode, n_grid=n_grid)
    assert_same(got, want)
    # the stored classifier reproduces the reported probe accuracy
    ok = got["polarity"] != 0
    if ok.any():
        cols = acts[probe][:, got["neuron"]]
        truth = y[probe][:, None] == got["class"][None, :]
        acc = (predict(cols, got["polarity"], got["threshold"]) == truth).mean(axis=0)
        np.testing.assert_allclose(acc[ok], got["probe_acc"][ok], rtol=1e-6)
    return got


def split(n, n_probe, rng):
    probe = np.zeros(n, dtype=bool)
    probe[rng.permutation(n)[:n_probe]] = True
    return probe


# ------------------------------------------------------------------------------------------------------------------
# Exact mode against the brute force
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_random_continuous(dtype):
    rng = np.random.default_rng(0)
    n, m = 60, 40
    y = rng.integers(0, 2, n)
    acts = (rng.standard_normal((n, m)) + 0.8 * y[:, None] * rng.standard_normal(m)).astype(dtype)
    check(acts, y, split(n, 40, rng), chunk_size=16)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_balanced_probe_median_tie_break(dtype):
    # P == N on the probe: every accuracy tie is also a balanced-accuracy tie, so |t - median| decides
    rng = np.random.default_rng(1)
    for n_probe in (40, 41):
        n = n_probe + 20
        y = np.zeros(n, dtype=np.int64)
        probe = np.zeros(n, dtype=bool)
        probe[:n_probe] = True
        y[: n_probe // 2] = 1
        y[n_probe:] = rng.integers(0, 2, 20)
        acts = rng.standard_normal((n, 40)).astype(dtype)
        check(acts, y, probe)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_heavy_ties(dtype):
    rng = np.random.default_rng(2)
    n, m = 60, 40
    y = rng.integers(0, 2, n)
    acts = rng.integers(-2, 3, (n, m)).astype(dtype)
    acts[rng.random((n, m)) < 0.1] = -0.0  # -0.0 and +0.0 are the same value
    acts[:, :5] = rng.integers(0, 2, (n, 5))  # two-valued neurons
    check(acts, y, split(n, 40, rng))
    y[:30] = np.arange(30) % 2  # probe of 30 balanced samples
    check(acts, y, np.arange(n) < 30)


def test_constant_and_invalid_neurons():
    rng = np.random.default_rng(3)
    n, m = 60, 12
    y = rng.integers(0, 2, n)
    acts = rng.standard_normal((n, m)).astype(np.float16)
    acts[:, 0] = 1.5
    acts[:, 1] = 0.0
    acts[3, 2] = np.nan  # probe NaN
    acts[55, 3] = np.nan  # eval NaN
    acts[7, 4] = np.inf
    acts[:, 5] = np.nan
    probe = np.arange(n) < 40
    got = check(acts, y, probe, model_pred=y)
    for j in (0, 1):  # constant: a constant prediction (the probe majority class), from a -inf/+inf cut
        assert np.isinf(got["threshold"][j])
        assert got["probe_acc"][j] == pytest.approx(max(y[probe].mean(), 1 - y[probe].mean()))
        assert got["probe_auroc"][j] == 0.5
    for j in (2, 3, 4, 5):
        assert got["polarity"][j] == 0
        assert all(np.isnan(got[c][j]) for c in COLUMNS[3:])
    # invalid neurons do not disturb the others
    clean = fit_block(acts[:, 6:], y, probe, y, 2)
    for c in COLUMNS[2:]:
        np.testing.assert_array_equal(got[c][6:], clean[c])
    got = check(acts, y, probe, model_pred=y, mode="grid")
    assert (got["polarity"][2:6] == 0).all() and np.isnan(got["threshold"][2:6]).all()


def test_constant_neuron_balanced_probe_tie():
    n = 40
    y = np.arange(n) % 2
    acts = np.full((n, 2), 3.0, dtype=np.float32)
    got = check(acts, y, np.arange(n) < 20)
    # all-positive and all-negative tie everywhere: polarity +1, then the smaller t (-inf: predict all positive)
    assert list(got["polarity"]) == [1, 1]
    assert list(got["threshold"]) == [-np.inf, -np.inf]


def test_imbalanced_and_single_class_splits():
    rng = np.random.default_rng(4)
    n, m = 60, 30
    acts = rng.standard_normal((n, m)).astype(np.float32)
    probe = np.arange(n) < 40
    y = np.zeros(n, dtype=np.int64)
    y[rng.choice(40, 4, replace=False)] = 1
    y[40:] = rng.integers(0, 2, 20)
    check(acts, y, probe)  # imbalanced probe
    y1 = y.copy()
    y1[:40] = 0
    got = check(acts, y1, probe)  # probe has no positive
    assert np.isnan(got["probe_auroc"]).all()
    assert (got["probe_mcc"] == 0).all() and (got["probe_f1"] == 0).all()
    np.testing.assert_array_equal(got["probe_bal_acc"], got["probe_acc"])
    y2 = y.copy()
    y2[40:] = 1
    got = check(acts, y2, probe)  # eval has no negative
    assert np.isnan(got["eval_auroc"]).all()
    np.testing.assert_array_equal(got["eval_bal_acc"], got["eval_acc"])
    y3 = np.ones(n, dtype=np.int64)
    check(acts, y3, probe)  # a single class everywhere


def test_empty_eval_split_and_index_probe():
    rng = np.random.default_rng(5)
    n = 50
    acts = rng.standard_normal((n, 20)).astype(np.float16)
    y = rng.integers(0, 2, n)
    got = check(acts, y, np.ones(n, dtype=bool))
    for c in COLUMNS[4:]:
        if c.startswith("eval_") or c == "agreement":
            assert np.isnan(got[c]).all(), c
    probe = split(n, 30, rng)
    a = fit_block(acts, y, probe, y, 2)
    b = fit_block(acts, y, np.flatnonzero(probe), y, 2)
    for c in COLUMNS:
        np.testing.assert_array_equal(a[c], b[c])
    with pytest.raises(ValueError):
        fit_block(acts, y, np.zeros(n, dtype=bool), y, 2)
    with pytest.raises(TypeError):
        fit_block(acts.astype(np.float64), y, probe, y, 2)
    c = fit_block(acts.astype(">f2"), y, probe, y, 2)  # big-endian input
    for col in COLUMNS:
        np.testing.assert_array_equal(a[col], c[col])
    assert np.isnan(fit_block(acts, y, probe, None, 2)["agreement"]).all()


def test_float16_adjacent_values():
    # neighbouring representable float16 values: the midpoint (float32) must lie strictly between them
    base = np.array([1.0, -1.0, 0.0, 2048.0, 6.0e-8, 65472.0], dtype=np.float16)
    nxt = np.nextafter(base, np.float16(np.inf))
    n, _m = 40, len(base)
    y = np.arange(n) % 2
    acts = np.where(y[:, None] == 1, nxt[None, :], base[None, :]).astype(np.float16)
    acts[-6:] = base  # eval
    probe = np.arange(n) < 34
    got = check(acts, y, probe)
    assert (got["probe_acc"] == 1).all()
    assert ((got["threshold"] > base) & (got["threshold"] < nxt)).all()
    assert (got["polarity"] == 1).all()


def test_float32_adjacent_values():
    # the float64 midpoint rounds (ties to even) onto the lower or the upper neighbour depending on the mantissa
    base = np.array([1.0, 1.0000001, -3.0, -3.0000002, 1e7, 0.0], dtype=np.float32)
    nxt = np.nextafter(base, np.float32(np.inf))
    assert (np.float32((base.astype(np.float64) + nxt) / 2) == nxt).any()
    n = 40
    y = (np.arange(n) % 2 == 0).astype(np.int64)
    neg_pos = np.where(y[:, None] == 1, nxt, base).astype(np.float32)  # polarity +1 separates
    pos_neg = np.where(y[:, None] == 1, base, nxt).astype(np.float32)  # polarity -1 separates
    acts = np.concatenate([neg_pos, pos_neg], axis=1)
    got = check(acts, y, np.arange(n) < 30)
    assert (got["probe_acc"] == 1).all()
    assert list(got["polarity"]) == [1] * 6 + [-1] * 6


# ------------------------------------------------------------------------------------------------------------------
# Grid mode, multi-class
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_grid_mode(dtype):
    rng = np.random.default_rng(6)
    n, m = 60, 40
    y = rng.integers(0, 2, n)
    acts = (2 * rng.standard_normal((n, m))).astype(dtype)
    grid = np.linspace(-3, 3, 61).astype(np.float32)
    acts[:, :10] = grid[rng.integers(0, 61, (n, 10))]  # values exactly on grid points (a - t == 0)
    acts[:, 10] = np.where(np.arange(n) % 2, 0.0, -0.0)  # on the grid point 0, both zeros
    acts[:, 11] = 5.0  # outside the grid
    probe = split(n, 40, rng)
    check(acts, y, probe, mode="grid")
    check(acts, y, probe, mode="grid", n_grid=7)
    yb = y.copy()
    yb[probe] = np.arange(40) % 2  # balanced probe: median tie-break among grid points
    check(acts, yb, probe, mode="grid")


@pytest.mark.parametrize("mode", ["exact", "grid"])
def test_multiclass_one_vs_rest(mode):
    rng = np.random.default_rng(7)
    n, m, k = 60, 20, 4
    y = rng.integers(0, k, n)
    acts = (rng.standard_normal((n, m)) + 0.5 * y[:, None]).astype(np.float16)
    acts[:, 3] = rng.integers(0, 3, n)
    probe = split(n, 40, rng)
    got = check(acts, y, probe, n_classes=k, mode=mode, chunk_size=7)
    assert list(got["class"][:8]) == [0, 1, 2, 3, 0, 1, 2, 3]
    y2 = y.copy()
    y2[y2 == 3] = 0  # class 3 absent
    check(acts, y2, probe, n_classes=k, mode=mode)


def test_chunking_does_not_change_results():
    rng = np.random.default_rng(8)
    acts = rng.integers(-3, 4, (80, 300)).astype(np.float16)
    y = rng.integers(0, 3, 80)
    probe = split(80, 50, rng)
    a = fit_block(acts, y, probe, y, 3)
    b = fit_block(acts, y, probe, y, 3, chunk_size=13)
    for c in COLUMNS:
        np.testing.assert_array_equal(a[c], b[c])


# ------------------------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------------------------


def test_brute_force_metrics_match_sklearn():
    if skm is None:
        pytest.skip("scikit-learn not installed")
    rng = np.random.default_rng(9)
    for _trial in range(30):
        n = int(rng.integers(2, 30))
        truth = rng.random(n) < rng.random()
        vals = rng.integers(-3, 3, n).astype(np.float64)
        s, t = int(rng.choice([1, -1])), float(rng.integers(-3, 3)) + 0.5
        got = bf_metrics(list(vals), list(truth), s, t)
        pred = np.array(bf_predict(vals, s, t))
        assert got["acc"] == pytest.approx(skm.accuracy_score(truth, pred))
        assert got["f1"] == pytest.approx(skm.f1_score(truth, pred, zero_division=0))
        assert got["mcc"] == pytest.approx(skm.matthews_corrcoef(truth, pred))
        if truth.all() or not truth.any():
            assert math.isnan(got["auroc"])
        else:
            assert got["auroc"] == pytest.approx(skm.roc_auc_score(truth, s * vals))
            assert got["bal_acc"] == pytest.approx(skm.balanced_accuracy_score(truth, pred))
        np.testing.assert_allclose(auroc(s * vals, truth), got["auroc"], equal_nan=True)


def test_public_helpers():
    rng = np.random.default_rng(10)
    scores = rng.integers(0, 4, (25, 6)).astype(np.float32)
    truth = rng.random(25) < 0.4
    want = [bf_auroc(list(scores[:, j]), list(truth)) for j in range(6)]
    np.testing.assert_allclose(auroc(scores, truth), want)
    assert np.isnan(auroc(scores[:, 0], np.ones(25, dtype=bool)))
    pol = np.array([1, -1, 0, 1, -1, 1], dtype=np.int8)
    thr = np.array([1.5, 1.5, 0.0, -np.inf, np.inf, np.nan], dtype=np.float32)
    pred = predict(scores, pol, thr)
    assert pred.shape == (25, 6)
    np.testing.assert_array_equal(pred[:, 0], scores[:, 0] > 1.5)
    np.testing.assert_array_equal(pred[:, 1], scores[:, 1] < 1.5)
    assert not pred[:, 2].any() and pred[:, 3].all() and pred[:, 4].all() and not pred[:, 5].any()
    np.testing.assert_array_equal(pred[:, :2], decision_function(scores, pol, thr)[:, :2] > 0)
    bm = binary_metrics(pred, truth)
    for j in range(6):
        tp, fp, tn, fn = bf_counts(list(pred[:, j]), list(truth))
        assert bm["acc"][j] == pytest.approx((tp + tn) / 25)
        assert bm["bal_acc"][j] == pytest.approx(float(bf_bal(tp, fp, tn, fn)))


def test_vote_majority_and_ties():
    preds = np.array(
        [
            [0, 0, 1],  # majority 0
            [0, 1, 2],  # three-way tie: strongest |margin| is member 2 -> class 2
            [1, 0, 1],  # majority 1 despite a strong 0
            [2, 0, 0],  # majority 0
            [1, 0, 3],  # tie with equal |margin| for 1 and 3, weaker 0 -> smallest class among {1, 3}
            [1, 0, 2],  # NaN margins are the weakest -> class 0
        ]
    )
    margins = np.array(
        [
            [0.1, 0.1, 9.0],
            [0.5, -1.0, -2.0],
            [0.1, 50.0, 0.1],
            [9.0, 0.1, 0.1],
            [-3.0, 1.0, 3.0],
            [np.nan, 0.2, np.nan],
        ]
    )
    np.testing.assert_array_equal(vote(preds, margins), [0, 2, 1, 0, 1, 0])
    np.testing.assert_array_equal(vote(preds[:, :1], margins[:, :1]), preds[:, 0])
    with pytest.raises(ValueError):
        vote(preds, margins[:, :2])


def test_fuzz_small_blocks():
    # many tiny blocks with few distinct values: every tie rule gets exercised
    rng = np.random.default_rng(11)
    for trial in range(40):
        n = int(rng.integers(2, 25))
        k = int(rng.choice([2, 2, 3, 4]))
        dtype = [np.float16, np.float32][trial % 2]
        acts = (rng.integers(-3, 4, (n, 8)) * rng.choice([1.0, 0.5, 1.7])).astype(dtype)
        y = rng.integers(0, k, n)
        probe = rng.random(n) < 0.6
        probe[rng.integers(n)] = True
        mode = "grid" if trial % 5 == 4 else "exact"
        check(acts, y, probe, model_pred=rng.integers(0, k, n), n_classes=k, mode=mode, n_grid=13)
