"""Extraction throughput against a bare batched forward pass of the same model on the same batches.

    python benchmarks/bench_extract.py [--geometry tiny|mid|all] [--batch-size 16] [--checksum on|off|both]

Prints samples/s of (a) the bare forward pass on pre-built input tensors, (b) preprocessing + bare forward,
(c) `sn_store.extract` end to end (images, processor, forward with hooks on every site of every layer, base-model
logits, float16 conversion, Zarr writes), and the overhead ratio (c)/(a) (goal: at most 1.10). `--checksum both`
times (c) with and without the crc32c codec on every chunk (best of two runs each, alternating).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from sn_store import store as zstore
from sn_store.datasets import load_dataset, resolve_spec
from sn_store.extract import extract
from sn_store.models import load_model
from sn_store.models.tiny import TinyDims, build_tiny

GEOMETRIES = {
    "tiny": (TinyDims(), 256),
    # A mid-size decoder (~170M parameters) with a 64-token image: minutes, not hours, on 2 CPU cores.
    "mid": (TinyDims(hidden=1024, layers=8, intermediate=2816, heads=16, kv_heads=16, vision_hidden=256,
                     vision_layers=4, vision_heads=4, image_size=112, patch_size=14), 64),
}


def timed_extract(adapter, ds, batch_size: int, workdir: Path, checksum: bool, tag: str) -> tuple[float, float]:
    """Wall and CPU seconds (all threads) of one extraction, with or without crc32c on every chunk."""
    saved, zstore.CHECKSUM = zstore.CHECKSUM, (zstore.Crc32cCodec() if checksum else None)
    try:
        t, c = time.perf_counter(), time.process_time()
        extract(adapter, ds, store=str(workdir / f"{tag}.zarr"), batch_size=batch_size, progress=False)
        return time.perf_counter() - t, time.process_time() - c
    finally:
        zstore.CHECKSUM = saved


def codec_cost(workdir: Path, n_chunks: int = 64, repeats: int = 9) -> None:
    """The checksum alone: write and read `n_chunks` activation chunks (256 x 1 x 4096 float16, blosc lz4) with and
    without crc32c, best CPU time of `repeats` alternating runs (CPU time: the machine may be busy)."""
    import numpy as np
    import zarr

    data = np.random.default_rng(0).standard_normal((256, n_chunks, 4096)).astype(np.float16)
    arrays = {on: zarr.create_array(str(workdir / f"codec-{on}.zarr"), shape=data.shape, dtype="float16",
                                    chunks=(256, 1, 4096),
                                    compressors=[zstore.COMPRESSOR, *([zstore.Crc32cCodec()] if on else [])])
              for on in (False, True)}
    best: dict[bool, list[float]] = {True: [np.inf, np.inf], False: [np.inf, np.inf]}
    for _ in range(repeats):
        for on, arr in arrays.items():
            c = time.process_time()
            arr[...] = data
            best[on][0] = min(best[on][0], time.process_time() - c)
            c = time.process_time()
            arr[...]
            best[on][1] = min(best[on][1], time.process_time() - c)
    mb = data.nbytes / 2**20
    for j, what in enumerate(("write", "read")):
        a, b = best[True][j], best[False][j]
        print(f"  {what} {mb:.0f} MiB of activation chunks: {b * 1e3:.0f} ms CPU without crc32c, {a * 1e3:.0f} ms "
              f"with (x{a / b:.3f})")


def bench(name: str, batch_size: int, workdir: Path, checksum: str = "on") -> dict[str, float]:
    dims, n = GEOMETRIES[name]
    path = build_tiny("llava", workdir / f"model-{name}", dims=dims)
    adapter = load_model(str(path), device="cpu")
    spec = resolve_spec("shapes-exist")
    ds = load_dataset(spec.model_copy(update={"params": {"n": n}, "probe_size": n // 2, "eval_size": n - n // 2}))
    spans = [(a, min(a + batch_size, n)) for a in range(0, n, batch_size)]

    def prepare(a, b):
        return adapter.build_inputs([s.load_image() for s in ds.samples[a:b]], [s.question for s in ds.samples[a:b]])

    with torch.inference_mode():
        adapter.model(**prepare(*spans[0]), use_cache=False)  # warm-up
        t0 = time.perf_counter()
        batches = [prepare(a, b) for a, b in spans]
        t1 = time.perf_counter()
        for inputs in batches:
            adapter.model(**inputs, use_cache=False)
        t2 = time.perf_counter()
    bare, prep = t2 - t1, t1 - t0
    modes = {"on": [True], "off": [False], "both": [False, True, False, True]}[checksum]
    times: dict[bool, list[tuple[float, float]]] = {}
    for i, on in enumerate(modes):
        times.setdefault(on, []).append(timed_extract(adapter, ds, batch_size, workdir, on, f"{name}-{i}"))
    full = min(w for w, _ in times[modes[-1]])
    n_params = sum(p.numel() for p in adapter.model.parameters())
    print(f"\n[{name}] {n_params / 1e6:.1f}M parameters, {adapter.num_layers} layers, "
          f"{sum(adapter.site_width(s) for s in ('resid', 'mlp', 'attn'))} neurons/layer, {n} samples, "
          f"batch {batch_size}, {torch.get_num_threads()} threads")
    print(f"  bare forward (pre-built tensors)    {n / bare:9.1f} samples/s")
    print(f"  preprocessing + bare forward        {n / (bare + prep):9.1f} samples/s")
    best = {on: (min(w for w, _ in ts), min(c for _, c in ts)) for on, ts in times.items()}
    for on, (wall, cpu) in best.items():
        label = "with crc32c" if on else "without crc32c"
        print(f"  sn_store.extract, {label:15}    {n / wall:9.1f} samples/s  (CPU {cpu:.2f} s)")
    if len(best) == 2:
        print(f"  checksum cost, with / without crc32c: wall {best[True][0] / best[False][0]:.3f}, "
              f"CPU {best[True][1] / best[False][1]:.3f}")
    print(f"  overhead ratio extract / bare forward: {full / bare:.2f}  (goal <= 1.10)")
    print(f"  ratio extract / (preprocessing + bare forward): {full / (bare + prep):.2f}")
    return {"bare": bare, "prep": prep, "extract": full}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--geometry", choices=[*GEOMETRIES, "all"], default="all")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--checksum", choices=["on", "off", "both"], default="on",
                        help="crc32c on every chunk (the default), without, or both for the comparison")
    args = parser.parse_args()
    names = list(GEOMETRIES) if args.geometry == "all" else [args.geometry]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            bench(name, args.batch_size, Path(tmp), args.checksum)
        if args.checksum == "both":
            print("\n[codec] the checksum alone")
            codec_cost(Path(tmp))


if __name__ == "__main__":
    main()
