"""Pure-numpy search kernel for Super Neurons: fit one threshold classifier per (neuron, class) of a block.

A block is ``acts`` of shape (n_samples, n_neurons), float16 or float32: one layer/site, many neurons. For every
neuron (and, for K > 2, every class k one-vs-rest with ``y == k`` positive) the kernel fits a binary classifier

    predict positive  iff  s * (a - t) > 0,        polarity s in {+1, -1}, threshold t (float32)

on the probe samples and reports its metrics on the probe and eval samples (see ``fit_block`` for the exact rules).

How it is fast (no Python loop per neuron; loops only over chunks of neurons and over classes):

* The block is transposed to neuron-major rows. Each value is mapped to an order-preserving unsigned key (IEEE bit
  pattern; negatives get all bits flipped, positives get the sign bit set; -0 is first made +0) and the sample's
  label is packed into the low bits: ``key << B | label``. One plain ``np.sort`` of these integers (SIMD sort for
  32/64-bit integers) sorts every row by value and carries the labels along, so no argsort and no gather is needed.
  Order inside a run of equal values does not matter: only cuts between distinct values are candidates.
* A cumulative sum of ``+1`` (negative) / ``-1`` (positive) over the sorted labels, ``D[i] = #neg - #pos`` among the
  i smallest values, gives the probe confusion counts of the cut at position i for both polarities at once:
  correct(+1) = P + D[i], correct(-1) = N - D[i].
* Medians, thresholds and ranks (AUROC, Mann-Whitney U with average ranks) come from the same sorted rows.

Public helpers reused by other modules: ``predict``, ``decision_function``, ``confusion_metrics``,
``binary_metrics``, ``auroc``, ``vote``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "COLUMNS",
    "METRIC_COLUMNS",
    "auroc",
    "binary_metrics",
    "confusion_metrics",
    "decision_function",
    "fit_block",
    "predict",
    "vote",
]

METRIC_COLUMNS = (
    "probe_acc",
    "probe_bal_acc",
    "probe_f1",
    "probe_mcc",
    "probe_auroc",
    "eval_acc",
    "eval_bal_acc",
    "eval_f1",
    "eval_mcc",
    "eval_auroc",
    "agreement",
)
COLUMNS = ("neuron", "class", "polarity", "threshold") + METRIC_COLUMNS

# dtype -> (unsigned key type, signed type of the same width, packed key+label type, label bits)
_SPECS = {
    np.dtype(np.float16): (np.uint16, np.int16, np.uint32, 16),
    np.dtype(np.float32): (np.uint32, np.int32, np.uint64, 32),
}
_DEFAULT_CHUNK = 512


# ----------------------------------------------------------------------------------------------------------------
# Order-preserving integer keys
# ----------------------------------------------------------------------------------------------------------------


def _float_keys(x: np.ndarray) -> np.ndarray:
    """Unsigned keys with ``key(a) < key(b) <=> a < b`` and ``key(a) == key(b) <=> a == b`` for non-NaN a, b."""
    u_t, i_t, _, _ = _SPECS[x.dtype]
    bits = 8 * np.dtype(u_t).itemsize
    sign = u_t(1 << (bits - 1))
    b = x.view(u_t)
    b = np.where(b == sign, u_t(0), b)  # -0.0 -> +0.0, so that equal values get equal keys
    mask = (b.view(i_t) >> (bits - 1)).view(u_t) | sign  # all ones for negatives, sign bit for positives
    return b ^ mask


def _keys_to_float(k: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Inverse of ``_float_keys`` (returns values of ``dtype``)."""
    u_t, i_t, _, _ = _SPECS[np.dtype(dtype)]
    bits = 8 * np.dtype(u_t).itemsize
    sign = u_t(1 << (bits - 1))
    k = np.asarray(k, dtype=u_t)
    mask = ~((k.view(i_t) >> (bits - 1)).view(u_t)) | sign
    return (k ^ mask).view(dtype)


def _sorted_rows(keys: np.ndarray, labels: np.ndarray):
    """Sort every row of ``keys`` (rows = neurons); return (sorted keys, the labels carried along)."""
    u_t = keys.dtype.type
    p_t, shift = (np.uint32, 16) if u_t is np.uint16 else (np.uint64, 32)
    packed = keys.astype(p_t)
    packed <<= p_t(shift)
    packed |= labels.astype(p_t)[None, :]
    packed.sort(axis=1)
    lab = (packed & p_t((1 << shift) - 1)).astype(labels.dtype)
    packed >>= p_t(shift)
    return packed.astype(u_t), lab


def _threshold_keys(t: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Keys of the largest value of ``dtype`` <= t and of the smallest >= t (t float32; NaN gives garbage)."""
    dtype = np.dtype(dtype)
    t = np.asarray(t, dtype=np.float32)
    if dtype == np.float32:
        k = _float_keys(t)
        return k, k
    with np.errstate(over="ignore", invalid="ignore"):
        f = t.astype(dtype)
        down = np.where(f > t, np.nextafter(f, dtype.type(-np.inf)), f)
        up = np.where(f < t, np.nextafter(f, dtype.type(np.inf)), f)
    return _float_keys(down), _float_keys(up)


def _predict_keys(keys: np.ndarray, dtype, polarity: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """``predict`` on neuron-major rows given as keys: (r, n) keys, (r,) polarity and float32 threshold."""
    u_t = keys.dtype.type
    kle, kge = _threshold_keys(threshold, dtype)
    ones = u_t(np.iinfo(u_t).max)
    flip = np.where(polarity < 0, ones, u_t(0))
    thr = np.where(polarity > 0, kle, np.where(polarity < 0, ~kge, ones))
    # a > t  <=>  key(a) > key(largest value <= t);   a < t  <=>  ~key(a) > ~key(smallest value >= t)
    return (keys ^ flip[:, None]) > thr[:, None]


def _neuron_major(a: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
    """Contiguous (n_neurons, len(idx)) copy of ``a[idx].T`` (idx None: all rows), copied in row blocks.

    numpy's own transposed copy of a (1000, 4096) float16 block takes ~25 ms; blocks of 32 samples take ~2 ms.
    """
    n_rows = a.shape[0] if idx is None else idx.size
    u = a.view(_SPECS[a.dtype][0])  # plain integer copies (float16 copies can be slower)
    out = np.empty((a.shape[1], n_rows), dtype=u.dtype)
    for i in range(0, n_rows, 32):
        src = u[i : i + 32] if idx is None else u[idx[i : i + 32]]
        out[:, i : i + 32] = src.T
    return out.view(a.dtype)


# ----------------------------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------------------------


def confusion_metrics(tp, fp, tn, fn) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy, F1 (positive class) and MCC from confusion counts (any broadcastable shape).

    Degenerate cases: no samples -> all NaN. Only one class present -> balanced accuracy = recall of that class.
    F1 = 0 when TP = 0 (precision + recall = 0 or undefined). MCC = 0 when its denominator is 0.
    Returns float64 arrays.
    """
    tp, fp, tn, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, tn, fn))
    n = tp + fp + tn + fn
    pos = tp + fn
    neg = tn + fp
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.where(n > 0, (tp + tn) / n, np.nan)
        tpr = tp / pos
        tnr = tn / neg
        bal = np.where(
            (pos > 0) & (neg > 0), (tpr + tnr) / 2, np.where(pos > 0, tpr, np.where(neg > 0, tnr, np.nan))
        )
        f1 = np.where(tp > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        den = np.sqrt((tp + fp) * pos * neg * (tn + fn))
        mcc = np.where(den > 0, (tp * tn - fp * fn) / den, 0.0)
    f1 = np.where(n > 0, f1, np.nan)
    mcc = np.where(n > 0, mcc, np.nan)
    return {"acc": acc, "bal_acc": bal, "f1": f1, "mcc": mcc}


def binary_metrics(pred, y_pos) -> dict[str, np.ndarray]:
    """``confusion_metrics`` of binary predictions, vectorised over columns.

    pred: (n_samples,) or (n_samples, n_rows) bool (True = positive class).
    y_pos: (n_samples,) bool truth shared by all columns, or the same shape as ``pred``.
    """
    pred = np.asarray(pred, dtype=bool)
    y_pos = np.asarray(y_pos, dtype=bool)
    if y_pos.ndim < pred.ndim:
        y_pos = y_pos.reshape(y_pos.shape + (1,) * (pred.ndim - y_pos.ndim))
    tp = np.count_nonzero(pred & y_pos, axis=0)
    pp = np.count_nonzero(pred, axis=0)
    p = np.count_nonzero(np.broadcast_to(y_pos, pred.shape), axis=0)
    n = pred.shape[0]
    return confusion_metrics(tp, pp - tp, n - pp - p + tp, p - tp)


def _rank_sums(sk: np.ndarray, sl: np.ndarray, classes) -> np.ndarray:
    """For sorted rows (keys ``sk``, labels ``sl``): sum over samples of class k of 2 * (average 1-based rank).

    Returns int64 (n_rows, len(classes)). Equal keys share the average of their ranks (Mann-Whitney ties): the sum
    is 2 * (position + 1) over the class, plus a correction (run start + run end - 2 * position) computed only on the
    (usually few) positions inside runs of equal values.
    """
    r, n = sk.shape
    out = np.zeros((r, len(classes)), dtype=np.int64)
    if n == 0 or r == 0:
        return out
    base = np.arange(2, 2 * n + 2, 2, dtype=np.int32)
    for ci, k in enumerate(classes):
        out[:, ci] = np.einsum("ij,j->i", (sl == k).view(np.uint8), base, dtype=np.int64)
    if n == 1:
        return out
    # tied neighbour pairs (i, i + 1), as flat positions i + row * n; pairs never chain across rows (i <= n - 2)
    pairs = np.flatnonzero(sk[:, 1:] == sk[:, :-1])
    if pairs.size == 0:
        return out
    pairs += pairs // (n - 1)
    first = np.empty(pairs.size, dtype=bool)
    first[0] = True
    np.not_equal(pairs[1:], pairs[:-1] + 1, out=first[1:])
    i_first = np.flatnonzero(first)
    run_start = pairs[i_first]
    run_end = pairs[np.append(i_first[1:] - 1, pairs.size - 1)] + 1
    run_id = np.cumsum(first) - 1
    q = np.concatenate([pairs, run_end])  # every position inside a run, once
    rid = np.concatenate([run_id, np.arange(run_start.size)])
    corr = (run_start[rid] + run_end[rid] - 2 * q).astype(np.float64)
    row = q // n
    lab = sl.reshape(-1)[q]
    for ci, k in enumerate(classes):
        out[:, ci] += np.rint(np.bincount(row, weights=np.where(lab == k, corr, 0.0), minlength=r)).astype(np.int64)
    return out


def _auc_from_rank_sums(r2sum, p, n):
    """AUROC of the score for the positive class from 2 * (sum of positive ranks); NaN unless both classes exist."""
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.asarray(r2sum, dtype=np.float64) / 2 - p * (p + 1) / 2
        return np.where((p > 0) & (n > 0), u / (float(p) * float(n)), np.nan)


def auroc(scores, y_pos) -> np.ndarray:
    """Threshold-free AUROC of ``scores`` for the positive class (Mann-Whitney U, ties = average ranks).

    scores: (n_samples,) or (n_samples, n_rows) float; y_pos: (n_samples,) bool. NaN when only one class is
    present (or a score is NaN). Returns a float64 scalar array or (n_rows,).
    """
    s = np.asarray(scores, dtype=np.float64)
    y_pos = np.asarray(y_pos, dtype=bool)
    one = s.ndim == 1
    s2 = s[:, None] if one else s
    order = np.argsort(s2, axis=0, kind="stable")
    ss = np.take_along_axis(s2, order, axis=0).T
    lab = y_pos[order].T.astype(np.int8)
    ss = ss + 0.0  # -0.0 -> +0.0
    p = int(y_pos.sum())
    res = _auc_from_rank_sums(_rank_sums(ss, lab, [1])[:, 0], p, y_pos.size - p)
    res = np.where(np.isnan(s2).any(axis=0), np.nan, res)
    return res[0] if one else res


# ----------------------------------------------------------------------------------------------------------------
# Prediction and voting
# ----------------------------------------------------------------------------------------------------------------


def predict(acts, polarity, threshold) -> np.ndarray:
    """Binary predictions ``polarity * (acts - threshold) > 0`` (True = positive class), vectorised.

    acts: (n_samples,) or (n_samples, n_rows); polarity (int, +1/-1/0) and threshold (float32) broadcast against
    the last axis. Polarity 0 (an invalid neuron) predicts False everywhere; NaN values predict False.
    Comparisons are exact (float16 acts are widened to float32, never the threshold rounded).
    """
    a = np.asarray(acts)
    s = np.asarray(polarity)
    t = np.asarray(threshold, dtype=np.float32)
    return np.where(s > 0, a > t, (s < 0) & (a < t))


def decision_function(acts, polarity, threshold) -> np.ndarray:
    """Signed margin ``polarity * (acts - threshold)`` as float32 (> 0 means the positive class); for ``vote``."""
    a = np.asarray(acts, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.asarray(polarity, dtype=np.float32) * (a - np.asarray(threshold, dtype=np.float32))


def vote(preds_matrix, margins) -> np.ndarray:
    """Majority vote of several SN classifiers.

    preds_matrix: (n_samples, n_members) int class predictions (>= 0); margins: same shape, float (e.g. from
    ``decision_function``). Per sample, the class with the most votes wins; among classes tied for the most votes,
    the one whose strongest voter has the largest |margin| wins (NaN margins count as weakest); if that is tied too,
    the smallest class index. Returns (n_samples,) int64.
    """
    preds = np.asarray(preds_matrix)
    marg = np.abs(np.asarray(margins, dtype=np.float64))
    if preds.ndim != 2 or marg.shape != preds.shape:
        raise ValueError("vote: preds_matrix and margins must both be (n_samples, n_members)")
    n, k = preds.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if k == 0:
        raise ValueError("vote: no members")
    if not np.issubdtype(preds.dtype, np.integer) or preds.min() < 0:
        raise ValueError("vote: predictions must be non-negative integers")
    preds = preds.astype(np.int64)
    n_cls = int(preds.max()) + 1
    flat = (np.arange(n)[:, None] * n_cls + preds).ravel()
    counts = np.bincount(flat, minlength=n * n_cls).reshape(n, n_cls)
    tied = counts == counts.max(axis=1, keepdims=True)
    strength = np.full(n * n_cls, -2.0)
    np.maximum.at(strength, flat, np.where(np.isnan(marg), -1.0, marg).ravel())
    strength = np.where(tied, strength.reshape(n, n_cls), -3.0)
    return np.argmax(strength, axis=1).astype(np.int64)


# ----------------------------------------------------------------------------------------------------------------
# The search
# ----------------------------------------------------------------------------------------------------------------


def _as_mask(probe_mask, n: int) -> np.ndarray:
    pm = np.asarray(probe_mask)
    if pm.dtype == bool:
        if pm.shape != (n,):
            raise ValueError(f"probe_mask: expected shape ({n},), got {pm.shape}")
        return pm
    if np.issubdtype(pm.dtype, np.integer) and pm.ndim == 1:
        if pm.size and (pm.min() < -n or pm.max() >= n):
            raise ValueError("probe_mask: sample index out of range")
        mask = np.zeros(n, dtype=bool)
        mask[pm] = True
        return mask
    raise TypeError("probe_mask must be a boolean mask of shape (n_samples,) or 1-D integer sample indices")


def _row_count_below(sk: np.ndarray, dtype, t: np.ndarray, inclusive: bool) -> np.ndarray:
    """For sorted key rows ``sk`` (r, n): number of values < t_j (<= t_j if inclusive), shape (r, len(t)).

    One ``np.searchsorted`` over all rows at once: row index in the high bits makes the flattened rows one sorted
    array; thresholds become keys of the nearest representable values (exact comparisons).
    """
    r, n = sk.shape
    bits = 8 * sk.dtype.itemsize
    g_t = np.uint32 if bits == 16 and r < (1 << 16) else np.uint64
    row_hi = np.arange(r, dtype=g_t)[:, None] << g_t(bits)
    flat = (row_hi | sk.astype(g_t)).reshape(-1)
    kle, kge = _threshold_keys(t, dtype)
    targets = row_hi | (kle if inclusive else kge).astype(g_t)[None, :]
    idx = np.searchsorted(flat, targets.reshape(-1), side="right" if inclusive else "left")
    return idx.reshape(r, t.shape[0]).astype(np.int64) - np.arange(r, dtype=np.int64)[:, None] * n


def _exact_slots(dm: np.ndarray, invalid_off: np.ndarray, n_p: int, p: int, n: int):
    """Candidate cut positions per polarity for exact mode: (pos, pol) arrays of shape (r, S).

    All positions reaching a polarity's best probe accuracy have, for fixed P and N, a balanced accuracy linear in
    the position with slope (P - N) / 2 for s=+1 and (N - P) / 2 for s=-1: so when P != N (both > 0) only the first
    or last such position can win. Otherwise all of them tie on balanced accuracy and the one closest to the median
    wins; thresholds increase with the position and sit below the median up to position (n-1)//2 and above it from
    n//2 + 1, so the winner is among: the last candidate <= (n-1)//2, position n//2, the first candidate >= n//2+1.
    The final choice among these few slots applies the full tie rule (``_select``).
    """
    # ``invalid_off`` is 0 at valid cuts and 2 * n_p + 1 inside runs of equal values: pushed out of reach of the
    # max / min (D lies in [-n_p, n_p], and D = 0 at the always valid cut 0)
    hi_d = dm - invalid_off
    d_max = hi_d.max(axis=1)
    lo_d = dm + invalid_off
    d_min = lo_d.min(axis=1)
    cands = ((+1, hi_d == d_max[:, None]), (-1, lo_d == d_min[:, None]))
    pos_list, pol_list = [], []
    for s, c in cands:
        if p > 0 and n > 0 and p != n:
            take_last = (p > n) if s > 0 else (n > p)
            if take_last:
                pos = n_p - np.argmax(c[:, ::-1], axis=1)
            else:
                pos = np.argmax(c, axis=1)
            pos_list.append(pos)
            pol_list.append(s)
        else:
            lo_end = (n_p - 1) // 2
            mid = n_p // 2
            hi_start = mid + 1
            pos_list.append(lo_end - np.argmax(c[:, lo_end::-1], axis=1))
            pos_list.append(np.full(c.shape[0], mid))
            pos_list.append(hi_start + np.argmax(c[:, hi_start:], axis=1))
            pol_list.extend([s, s, s])
    pos = np.stack(pos_list, axis=1)
    pol = np.broadcast_to(np.array(pol_list, dtype=np.int8), pos.shape)
    rows = np.arange(pos.shape[0])[:, None]
    exists = np.where(pol > 0, hi_d[rows, pos] == d_max[:, None], lo_d[rows, pos] == d_min[:, None])
    return pos, pol, exists


def _cut_thresholds(sk: np.ndarray, dtype, pos: np.ndarray, pol: np.ndarray) -> np.ndarray:
    """float32 threshold of the cut at sorted position ``pos`` (0 = below all: -inf, n = above all: +inf).

    Midpoint of the two neighbouring distinct values, computed in float64 and rounded to float32. For float16 input
    it is always strictly between them. For float32 input it can round onto a neighbour when the two are adjacent
    float32 values; it is then set to the lower one for s=+1 and the upper one for s=-1, which keeps the fitted
    predictions (the comparison is strict).
    """
    r, n_p = sk.shape
    rows = np.arange(r)[:, None]
    lo = _keys_to_float(sk[rows, np.clip(pos - 1, 0, n_p - 1)], dtype).astype(np.float32)
    hi = _keys_to_float(sk[rows, np.clip(pos, 0, n_p - 1)], dtype).astype(np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        t = ((lo.astype(np.float64) + hi.astype(np.float64)) / 2).astype(np.float32)
    t = np.where((pol > 0) & (t >= hi), lo, t)
    t = np.where((pol < 0) & (t <= lo), hi, t)
    t = np.where(pos <= 0, np.float32(-np.inf), t)
    t = np.where(pos >= n_p, np.float32(np.inf), t)
    return t


def _select(exists, correct, score, dist, pol, t) -> np.ndarray:
    """Index of the winning slot per row: max accuracy, max balanced accuracy, min |t - median|, +1, min t."""
    m = exists.copy()

    def keep(m, v, lowest, best_fn):
        b = best_fn(np.where(m, v, lowest), axis=1)
        return m & (v == b[:, None])

    m = keep(m, correct, np.iinfo(np.int64).min, np.max)
    m = keep(m, score, np.iinfo(np.int64).min, np.max)
    m = keep(m, dist, np.inf, np.min)
    m = keep(m, pol.astype(np.int64), np.iinfo(np.int64).min, np.max)
    m = keep(m, t, np.inf, np.min)
    return np.argmax(m, axis=1)


def _fit_chunk(xp, xe, yp, ye, mpe, classes, mode, grid, out, row0, n_out_cls):
    """Fit one chunk of neurons. ``xp``/``xe``: neuron-major (r, n_probe) / (r, n_eval) of the block's dtype."""
    dtype = xp.dtype
    r, n_p = xp.shape
    n_e = xe.shape[1]
    rows = np.arange(r)[:, None]

    sk, sl = _sorted_rows(_float_keys(xp), yp)
    ke = _float_keys(xe)
    ske, sle = _sorted_rows(ke, ye)
    # NaN and +-inf sort to the ends of a row: a neuron is valid iff its extreme keys are finite values
    k_inf, k_ninf = _float_keys(np.array([np.inf, -np.inf], dtype=dtype))
    ok = (sk[:, 0] > k_ninf) & (sk[:, -1] < k_inf)
    if n_e:
        ok &= (ske[:, 0] > k_ninf) & (ske[:, -1] < k_inf)
    rs_p = _rank_sums(sk, sl, classes)
    rs_e = _rank_sums(ske, sle, classes)

    med_lo = _keys_to_float(sk[:, (n_p - 1) // 2], dtype).astype(np.float64)
    med_hi = _keys_to_float(sk[:, n_p // 2], dtype).astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        med = (med_lo + med_hi) / 2

    cum_t = np.int16 if n_p < 10000 else np.int32
    if mode == "exact":
        invalid_off = np.zeros((r, n_p + 1), dtype=cum_t)
        np.equal(sk[:, 1:], sk[:, :-1], out=invalid_off[:, 1:n_p], casting="unsafe")
        invalid_off *= cum_t(2 * n_p + 1)
    else:
        pos_le = _row_count_below(sk, dtype, grid, inclusive=True)
        pos_lt = _row_count_below(sk, dtype, grid, inclusive=False)
        g = grid.shape[0]
        grid_pos = np.concatenate([pos_le, pos_lt], axis=1)
        grid_pol = np.broadcast_to(np.repeat(np.array([1, -1], dtype=np.int8), g), grid_pos.shape)
        grid_t = np.broadcast_to(np.concatenate([grid, grid]), grid_pos.shape)

    for ci, k in enumerate(classes):
        p = int(np.count_nonzero(yp == k))
        n = n_p - p
        # D[i] = #negatives - #positives among the i smallest probe values
        w = (sl == k).view(np.int8) * np.int8(-2)
        w += np.int8(1)
        dm = np.empty((r, n_p + 1), dtype=cum_t)
        dm[:, 0] = 0
        np.cumsum(w, axis=1, dtype=cum_t, out=dm[:, 1:])

        if mode == "exact":
            pos, pol, exists = _exact_slots(dm, invalid_off, n_p, p, n)
            t = _cut_thresholds(sk, dtype, pos, pol)
        else:
            pos, pol, t = grid_pos, grid_pol, grid_t
            exists = np.ones(pos.shape, dtype=bool)

        d = dm[rows, pos].astype(np.int64)
        cp = (pos - d) // 2  # positives among the `pos` smallest values
        cn = (pos + d) // 2
        tp = np.where(pol > 0, p - cp, cp)
        tn = np.where(pol > 0, cn, n - cn)
        correct = tp + tn
        if p > 0 and n > 0:
            score = tp * n + tn * p  # balanced accuracy * 2PN, exact
        else:
            score = tn if p == 0 else tp
        with np.errstate(invalid="ignore"):
            dist = np.abs(t.astype(np.float64) - med[:, None])
        win = _select(exists, correct, score, dist, pol, t)[:, None]

        s_w = np.where(ok, np.take_along_axis(pol, win, axis=1)[:, 0], 0).astype(np.int8)
        t_w = np.where(ok, np.take_along_axis(t, win, axis=1)[:, 0], np.nan).astype(np.float32)
        tp_w = np.take_along_axis(tp, win, axis=1)[:, 0]
        tn_w = np.take_along_axis(tn, win, axis=1)[:, 0]
        pm = confusion_metrics(tp_w, n - tn_w, tn_w, p - tp_w)
        auc_p = _auc_from_rank_sums(rs_p[:, ci], p, n)

        # eval split: the same classifier, unchanged
        pe = int(np.count_nonzero(ye == k))
        ne = n_e - pe
        pred = _predict_keys(ke, dtype, s_w, t_w)
        tp_e = np.count_nonzero(pred & (ye == k), axis=1)
        pp_e = np.count_nonzero(pred, axis=1)
        em = confusion_metrics(tp_e, pp_e - tp_e, ne - pp_e + tp_e, pe - tp_e)
        auc_e = _auc_from_rank_sums(rs_e[:, ci], pe, ne)
        if mpe is None or n_e == 0:
            agree = np.full(r, np.nan)
        else:
            mk = mpe == k
            tm = np.count_nonzero(pred & mk, axis=1)
            agree = (n_e - pp_e - np.count_nonzero(mk) + 2 * tm) / np.float64(n_e)

        flip = s_w < 0
        cols = {
            "polarity": s_w,
            "threshold": t_w,
            "probe_acc": pm["acc"],
            "probe_bal_acc": pm["bal_acc"],
            "probe_f1": pm["f1"],
            "probe_mcc": pm["mcc"],
            "probe_auroc": np.where(flip, 1 - auc_p, auc_p),
            "eval_acc": em["acc"],
            "eval_bal_acc": em["bal_acc"],
            "eval_f1": em["f1"],
            "eval_mcc": em["mcc"],
            "eval_auroc": np.where(flip, 1 - auc_e, auc_e),
            "agreement": agree,
        }
        sel = slice(row0 + ci, row0 + r * n_out_cls, n_out_cls)
        for name, v in cols.items():
            out[name][sel] = v if name in ("polarity", "threshold") else np.where(ok, v, np.nan)


def fit_block(
    acts,
    y,
    probe_mask,
    model_pred,
    n_classes: int,
    mode: str = "exact",
    n_grid: int = 61,
    *,
    chunk_size: int = _DEFAULT_CHUNK,
) -> dict[str, np.ndarray]:
    """Fit and score a threshold classifier for every neuron (column) of ``acts``, and every class if K > 2.

    Parameters
    ----------
    acts: (n_samples, n_neurons) float16 or float32 activations (other dtypes: TypeError; cast explicitly).
    y: (n_samples,) int labels in 0..n_classes-1.
    probe_mask: (n_samples,) bool, or 1-D int sample indices: the probe (fitting) samples; all others are eval.
    model_pred: (n_samples,) int, the base model's predicted class (for ``agreement``), or None (agreement NaN).
    n_classes: K >= 2. K == 2: one row per neuron, class 1 positive. K > 2: one-vs-rest, a row per (neuron, class k)
        with ``y == k`` positive. Rows are ordered neuron-major, then class.
    mode: "exact" (thresholds = midpoints between consecutive distinct probe values, plus -inf and +inf, i.e. the
        cuts below and above all values) or "grid" (thresholds = float32(np.linspace(-3, 3, n_grid))).
    chunk_size: neurons per vectorised step (memory/speed only; results do not depend on it).

    Selection (probe only): highest accuracy; ties -> higher balanced accuracy -> smaller |t - median of the
    neuron's probe values| (float64) -> polarity +1 before -1 -> smaller t. Prediction is ``s * (a - t) > 0``.

    Metrics, probe (fitted classifier) and eval (same classifier): accuracy, balanced accuracy, F1 of the positive
    class, MCC, AUROC of ``s * a`` (Mann-Whitney, average ranks), and ``agreement`` = fraction of eval samples where
    the prediction equals ``model_pred == positive class``. Degenerate cases: a neuron with any NaN/inf value
    (probe or eval) is invalid: polarity 0, threshold and all metrics NaN. A constant neuron only has the -inf/+inf
    cuts (a constant prediction). One class only in a split: balanced accuracy = recall of that class, MCC = 0,
    AUROC = NaN. F1 = 0 when TP = 0. Empty eval split: eval metrics and agreement NaN. Empty probe: ValueError.

    Returns a dict of 1-D columns (``COLUMNS``): neuron, class (int32), polarity (int8), threshold and the metrics
    (float32).
    """
    a = np.asarray(acts)
    if a.ndim != 2:
        raise ValueError(f"acts must be 2-D (n_samples, n_neurons), got shape {a.shape}")
    if a.dtype.kind == "f" and not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if a.dtype not in _SPECS:
        raise TypeError(f"acts must be float16 or float32, got {a.dtype}")
    n_s, n_nrn = a.shape
    if int(n_classes) != n_classes or n_classes < 2:
        raise ValueError("n_classes must be an integer >= 2")
    n_classes = int(n_classes)
    if n_classes > (1 << 16):
        raise ValueError("n_classes too large")
    yv = np.asarray(y)
    if yv.shape != (n_s,) or not np.issubdtype(yv.dtype, np.integer):
        raise ValueError(f"y must be integers of shape ({n_s},)")
    if n_s and (yv.min() < 0 or yv.max() >= n_classes):
        raise ValueError(f"y must lie in 0..{n_classes - 1}")
    mp = None
    if model_pred is not None:
        mp = np.asarray(model_pred)
        if mp.shape != (n_s,) or not np.issubdtype(mp.dtype, np.integer):
            raise ValueError(f"model_pred must be integers of shape ({n_s},)")
    if mode not in ("exact", "grid"):
        raise ValueError("mode must be 'exact' or 'grid'")
    if mode == "grid" and int(n_grid) < 1:
        raise ValueError("n_grid must be >= 1")
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    mask = _as_mask(probe_mask, n_s)
    probe_idx = np.flatnonzero(mask)
    eval_idx = np.flatnonzero(~mask)
    if probe_idx.size == 0:
        raise ValueError("fit_block: the probe split is empty")

    classes = [1] if n_classes == 2 else list(range(n_classes))
    n_out_cls = len(classes)
    n_rows = n_nrn * n_out_cls
    out: dict[str, np.ndarray] = {
        "neuron": np.repeat(np.arange(n_nrn, dtype=np.int32), n_out_cls),
        "class": np.tile(np.array(classes, dtype=np.int32), n_nrn),
        "polarity": np.zeros(n_rows, dtype=np.int8),
        "threshold": np.full(n_rows, np.nan, dtype=np.float32),
    }
    for name in METRIC_COLUMNS:
        out[name] = np.full(n_rows, np.nan, dtype=np.float32)
    if n_nrn == 0:
        return out

    lab_t = np.uint8 if n_classes <= 256 else np.uint16
    yp = yv[probe_idx].astype(lab_t)
    ye = yv[eval_idx].astype(lab_t)
    mpe = None if mp is None else mp[eval_idx]
    xp_all = _neuron_major(a, None if probe_idx.size == n_s else probe_idx)
    xe_all = _neuron_major(a, eval_idx)
    grid = np.linspace(-3, 3, int(n_grid)).astype(np.float32) if mode == "grid" else None

    for c0 in range(0, n_nrn, chunk_size):
        c1 = min(c0 + chunk_size, n_nrn)
        _fit_chunk(xp_all[c0:c1], xe_all[c0:c1], yp, ye, mpe, classes, mode, grid, out, c0 * n_out_cls, n_out_cls)
    return out
