"""Cold start of the `sn` command: how long the quick commands take to answer, against importing torch+transformers.

    python benchmarks/bench_cli_startup.py [--repeat 7]

Each command runs in a fresh interpreter (`python -m sn_store ...`, as the `sn` script does) against a small
leaderboard written first; the figure is the median wall time of `--repeat` runs, with the min and max beside it.
The baseline is `python -c "import torch, transformers"`: what every command paid before imports were made lazy.
Goal: every quick command well under a second, a small fraction of the baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def seconds(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    res = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {res.stderr.strip()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SN_HOME": tmp}
        from sn_store.leaderboard import connect

        connect(Path(tmp) / "sn.duckdb").close()  # schema and views, no runs: `sql` needs a database to read
        sn = [sys.executable, "-m", "sn_store"]
        cases = {
            "baseline: import torch, transformers": [sys.executable, "-c", "import torch, transformers"],
            "sn --help": [*sn, "--help"],
            'sn sql "SELECT 1"': [*sn, "sql", "SELECT 1"],
            "sn datasets list": [*sn, "datasets", "list"],
        }
        seconds(cases["sn --help"], env)  # warm the file cache (bytecode, shared libraries) once for all
        print(f"{'command':40} {'median s':>9} {'min':>6} {'max':>6} {'x baseline':>10}")
        baseline = None
        for name, argv in cases.items():
            times = [seconds(argv, env) for _ in range(args.repeat)]
            median = statistics.median(times)
            baseline = baseline or median
            print(f"{name:40} {median:9.3f} {min(times):6.3f} {max(times):6.3f} {median / baseline:10.2f}")


if __name__ == "__main__":
    main()
