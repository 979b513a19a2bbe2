"""Loading a benchmark from a local hub-layout copy against the floor of reading its parquet shards.

    python benchmarks/bench_datasets.py [--rows 3000] [--side 320]

Writes a POPE-shaped folder (`data/test-*.parquet`, JPEG image structs of side x side pixels, 3 shards), then times
(a) `pyarrow.parquet.read_table` of the shards (the floor: the bytes must be read once) and (b) `load_dataset("pope",
source=...)`: rows, validation, the stratified split, and the content hash (every image read, verified, hashed).
Prints rows/s, the ratio (b)/(a), and the peak RSS growth of each.
"""

from __future__ import annotations

import argparse
import io
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.datasets.fixtures import write_shard


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def jpeg(i: int, side: int) -> bytes:
    rng = np.random.default_rng(i)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def write(root: Path, rows: int, side: int) -> int:
    images = [jpeg(i, side) for i in range(50)]  # POPE repeats its 500 COCO images too
    cats = ("adversarial", "popular", "random")
    data = [{"id": str(i), "question_id": str(i // 3 + 1), "question": f"Is there a thing {i} in the image?",
             "answer": ("yes", "no")[i % 2], "image_source": f"COCO_val2014_{i % 50:012d}",
             "image": {"bytes": images[i % 50], "path": f"{i % 50}.jpg"}, "category": cats[i % 3]}
            for i in range(rows)]
    step = -(-rows // 3)
    for k in range(3):
        write_shard(root / "data" / f"test-{k:05d}-of-00003.parquet", data[k * step : (k + 1) * step])
    return sum(len(r["image"]["bytes"]) for r in data)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--side", type=int, default=320)
    args = ap.parse_args()
    import pyarrow.parquet as pq

    from sn_store.datasets import load_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "POPE"
        size = write(root, args.rows, args.side)
        base = peak_mb()
        t0 = time.perf_counter()
        tables = [pq.read_table(f) for f in sorted((root / "data").glob("*.parquet"))]
        floor = time.perf_counter() - t0
        floor_mb = peak_mb() - base
        del tables
        t0 = time.perf_counter()
        ds = load_dataset("pope", source=str(root))
        full = time.perf_counter() - t0
        full_mb = peak_mb() - base
    print(f"{args.rows} rows, {size / 1e6:.0f} MB of JPEG ({args.side}x{args.side}), {len(ds)} samples kept")
    print(f"  read_table of the shards (floor)   {floor:6.2f} s  {args.rows / floor:9.0f} rows/s  +{floor_mb:.0f} MB")
    print(f"  load_dataset('pope', source=...)   {full:6.2f} s  {args.rows / full:9.0f} rows/s  +{full_mb:.0f} MB")
    print(f"  load / floor                       {full / floor:6.1f}x")


if __name__ == "__main__":
    main()
