"""Cold start of the `sn` command: how long the quick commands take to answer, against importing torch+transformers.

    python benchmarks/bench_cli_startup.py [--repeat 7]

Each command runs in a fresh interpreter (`python -m sn_store ...`, as the `sn` script does) against a small
leaderboard written first; the figures are the median wall time of `--repeat` runs, with the min and max beside it,
and the median CPU time (user + system: less sensitive to other work on the machine).
The baseline is `python -c "import torch, transformers"`: what every command paid before imports were made lazy.
Goal: every quick command well under a second, a small fraction of the baseline.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def seconds(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of `argv`: CPU time suffers less from a busy machine."""
    cpu0 = _children_cpu()
    start = time.perf_counter()
    res = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if res.returncode != 0 and "error:" not in res.stderr:  # a one-line refusal is a result too
        raise SystemExit(f"{' '.join(argv)} failed: {res.stderr.strip()}")
    return elapsed, _children_cpu() - cpu0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_run(home: Path) -> None:
    """A search of a small store written with plain zarr (8 layers x 512 neurons, 64 samples) into the database."""
    import numpy as np
    import zarr

    from sn_store.search import search

    rng = np.random.default_rng(0)
    n, layers, width = 64, 8, 512
    g = zarr.open_group(str(home / "s.zarr"), mode="w", zarr_format=3)
    for name, data, dims in (
        ("activations", rng.standard_normal((n, layers, width)).astype(np.float16), ("sample", "layer", "neuron")),
        ("label", (np.arange(n) % 2).astype(np.int16), ("sample",)),
        ("split", np.array(["probe", "eval"] * (n // 2), dtype=object), ("sample",)),
        ("layer", np.arange(layers, dtype=np.int32), ("layer",)),
        ("neuron_site", np.array(["resid"] * width, dtype=object), ("neuron",)),
        ("neuron_index", np.arange(width, dtype=np.int32), ("neuron",)),
    ):
        arr = g.create_array(name, shape=data.shape, dtype=str if data.dtype == object else data.dtype,
                             dimension_names=dims)
        arr[...] = data
    g.attrs.update({"classes": ["no", "yes"], "sites": ["resid"], "complete": True})
    search(str(home / "s.zarr"), db=str(home / "sn.duckdb"), progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SN_HOME": tmp}
        from sn_store.leaderboard import connect

        connect(Path(tmp) / "sn.duckdb").close()  # schema and views: `sql` needs a database to read
        one_run(Path(tmp))  # `top` and `runs` read a real run
        sn = [sys.executable, "-m", "sn_store"]
        cases = {
            "baseline: import torch, transformers": [sys.executable, "-c", "import torch, transformers"],
            "sn --help": [*sn, "--help"],
            'sn sql "SELECT 1"': [*sn, "sql", "SELECT 1"],
            "sn datasets list": [*sn, "datasets", "list"],
            "sn runs": [*sn, "runs"],
            "sn top --k 5": [*sn, "top", "--k", "5"],
            "sn models list": [*sn, "models", "list"],
            "sn top --k 0 (a refused option)": [*sn, "top", "--k", "0"],
        }
        seconds(cases["sn --help"], env)  # warm the file cache (bytecode, shared libraries) once for all
        print(f"{'command':34} {'wall median s':>13} {'min':>6} {'max':>6} {'x baseline':>10} {'cpu median s':>12} "
              f"{'x baseline':>10}")
        baseline = None
        for name, argv in cases.items():
            wall, cpu = zip(*(seconds(argv, env) for _ in range(args.repeat)))
            median, cpu_median = statistics.median(wall), statistics.median(cpu)
            baseline = baseline or (median, cpu_median)
            print(f"{name:34} {median:13.3f} {min(wall):6.3f} {max(wall):6.3f} {median / baseline[0]:10.2f} "
                  f"{cpu_median:12.3f} {cpu_median / baseline[1]:10.2f}")


if __name__ == "__main__":
    main()
