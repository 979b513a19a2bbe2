"""The whole search space of LLaVA-1.5-7B: 32 layers x 19,200 neurons (4,096 resid + 11,008 mlp + 4,096 attn).

    python benchmarks/bench_search.py [--layers 32] [--probe 1000] [--eval 200] [--stump-neurons 200]
                                      [--checksum on|off|both]

Builds a contract-conforming store of synthetic float16 values with some planted signal, then prints in one run:
the total search time and neurons/s, the floor (a bare float32 `argsort` of every block along the sample axis,
same blocks, same threads; goal: search <= 1.5x of it), the speed-up over a per-neuron sklearn decision stump
(goal >= 1000x), and the peak memory. Goal for the whole 614,400-neuron search on 2 cores: under 20 s.
`--checksum both` also builds the store without the crc32c codec and times opening (the missing-chunk check) and
the search on each, alternating.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import dask
import numpy as np
import zarr

from sn_store import store as zstore
from sn_store.evaluate import evaluate_run
from sn_store.leaderboard import write_run
from sn_store.search import blocks, fit_store

WIDTHS = {"resid": 4096, "mlp": 11008, "attn": 4096}


def build(path: str, n_layers: int, n_probe: int, n_eval: int, seed: int = 0, checksum: bool = True) -> np.ndarray:
    n = n_probe + n_eval
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(np.int64)
    rng.shuffle(y)
    layout = zstore.Layout(n_samples=n, layers=list(range(n_layers)), sites=list(WIDTHS), widths=WIDTHS,
                           classes=["no", "yes"], sample_ids=[f"s{i}" for i in range(n)])
    attrs = {"classes": ["no", "yes"], "sites": list(WIDTHS), "model": {"id": "synthetic", "config_hash": "-"},
             "dataset": {"name": "synthetic", "content_hash": "-"}}
    saved, zstore.CHECKSUM = zstore.CHECKSUM, (zstore.Crc32cCodec() if checksum else None)
    try:
        writer = zstore.StoreWriter.create(path, layout, y, ["probe"] * n_probe + ["eval"] * n_eval, attrs)
    finally:
        zstore.CHECKSUM = saved
    for layer in range(n_layers):
        acts = rng.standard_normal((n, layout.n_neurons), dtype=np.float32)
        planted = rng.choice(layout.n_neurons, 64, replace=False)  # 64 informative neurons per layer
        acts[:, planted] += rng.uniform(0.2, 2.0, 64) * (2 * y[:, None] - 1)
        writer.arrays["activations"][:, layer, :] = acts.astype(np.float16)
    writer.arrays["model_pred"][:] = np.where(rng.random(n) < 0.8, y, 1 - y)
    writer.arrays["model_logits"][:] = 0.0
    writer.finish()
    return y


def argsort_floor(path: str) -> float:
    acts = zarr.open_group(path, mode="r")["activations"]

    def one(b):
        return np.argsort(acts[:, b.layer_pos, b.start : b.stop].astype(np.float32), axis=0)[0, 0]

    tasks = [dask.delayed(one)(b) for b in blocks(acts.shape[1], acts.shape[2], acts.chunks[2])]
    t = time.perf_counter()
    dask.compute(*tasks, scheduler="threads")
    return time.perf_counter() - t


def stump_seconds_per_neuron(path: str, y: np.ndarray, n_probe: int, n_neurons: int) -> float:
    from sklearn.tree import DecisionTreeClassifier

    acts = zarr.open_group(path, mode="r")["activations"][:n_probe, 0, :n_neurons].astype(np.float32)
    t = time.perf_counter()
    for j in range(n_neurons):
        DecisionTreeClassifier(max_depth=1).fit(acts[:, j : j + 1], y[:n_probe])
    return (time.perf_counter() - t) / n_neurons


def checksum_cost(path: str, tmp: str, args) -> None:
    """Open (every chunk listed and checked present) and search the same store with and without crc32c."""
    paths = {True: path, False: str(Path(tmp) / "bench-plain.zarr")}
    build(paths[False], args.layers, args.probe, args.eval, checksum=False)
    times: dict[bool, dict[str, list[tuple[float, float]]]] = {on: {"open": [], "search": []} for on in paths}
    for on in (False, True, False, True):
        t, c = time.perf_counter(), time.process_time()
        reader = zstore.StoreReader(paths[on])
        times[on]["open"].append((time.perf_counter() - t, time.process_time() - c))
        t, c = time.perf_counter(), time.process_time()
        fit_store(reader, progress=False)
        times[on]["search"].append((time.perf_counter() - t, time.process_time() - c))
    for what in ("open", "search"):
        (wa, ca), (wb, cb) = ([min(x[i] for x in times[on][what]) for i in (0, 1)] for on in (True, False))
        print(f"{what} with crc32c: {wa:.2f} s (CPU {ca:.2f} s), without: {wb:.2f} s (CPU {cb:.2f} s); "
              f"with / without: wall {wa / wb:.3f}, CPU {ca / cb:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--probe", type=int, default=1000)
    parser.add_argument("--eval", type=int, default=200)
    parser.add_argument("--stump-neurons", type=int, default=200)
    parser.add_argument("--checksum", choices=["on", "both"], default="on",
                        help="both: also compare opening and searching a store without crc32c")
    args = parser.parse_args()
    n_neurons = args.layers * sum(WIDTHS.values())
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.zarr")
        t = time.perf_counter()
        y = build(path, args.layers, args.probe, args.eval)
        print(f"store: {args.layers} layers x {sum(WIDTHS.values())} neurons = {n_neurons:,} neurons, "
              f"{args.probe} probe + {args.eval} eval samples, built in {time.perf_counter() - t:.1f} s")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        floor = argsort_floor(path)
        t = time.perf_counter()
        table = fit_store(path, progress=False)
        total = time.perf_counter() - t
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t = time.perf_counter()
        evaluations = evaluate_run(path, table, ensemble_k=5)
        t_eval = time.perf_counter() - t
        t = time.perf_counter()
        write_run(str(Path(tmp) / "sn.duckdb"), {"store": path, "mode": "exact"}, table, evaluations)
        t_db = time.perf_counter() - t
        stump = stump_seconds_per_neuron(path, y, args.probe, args.stump_neurons)
        if args.checksum == "both":
            checksum_cost(path, tmp, args)
    per_neuron = total / n_neurons
    print(f"search (exact, {dask.config.get('num_workers', None) or 'all'} threads): {total:.2f} s, "
          f"{n_neurons / total:,.0f} neurons/s, {table.num_rows:,} rows  (goal for 614,400 neurons: < 20 s)")
    print(f"floor: float32 argsort of the same blocks: {floor:.2f} s; search / floor = {total / floor:.2f}  "
          f"(goal <= 1.5)")
    print(f"sklearn decision stump: {stump * 1e3:.2f} ms/neuron (on {args.stump_neurons} neurons); "
          f"speed-up {stump / per_neuron:,.0f}x  (goal >= 1000x)")
    print(f"evaluations (model, best SN, top-5 ensemble): {t_eval:.2f} s; DuckDB write of {table.num_rows:,} rows "
          f"in one transaction: {t_db:.2f} s; whole `sn search`: {total + t_eval + t_db:.2f} s")
    print(f"peak RSS: {rss_after:,.0f} MiB (before the search: {rss_before:,.0f} MiB)")


if __name__ == "__main__":
    main()
