"""Early exit against the full model answering the same questions with `generate`, same inputs, same device.

    python benchmarks/bench_early_exit.py [--geometry tiny|mid|all] [--exit-layer 1] [--device cpu]

For each geometry: builds a random-weight LLaVA (random weights cost the same as real ones), extracts a small store,
searches it, exports the best `mlp` neuron of `--exit-layer` as an artifact, then prints the latency (batch 1) and
throughput (batch 16) of the artifact and of `generate(max_new_tokens=1)`, both including preprocessing, the
speed-up, and the artifact's size against the full model's.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import duckdb
import torch

from sn_store.artifact import EarlyExitClassifier
from sn_store.datasets import load_dataset, resolve_spec
from sn_store.export import export
from sn_store.extract import extract
from sn_store.models import load_model
from sn_store.models.tiny import TinyDims, build_tiny
from sn_store.predict import measure_speedup
from sn_store.search import search

GEOMETRIES = {
    "tiny": TinyDims(),
    # DESIGN.md's CPU probe geometry: 16 decoder layers, hidden 1024, a 64-token image.
    "mid": TinyDims(hidden=1024, layers=16, intermediate=2816, heads=16, kv_heads=16, vision_hidden=256,
                    vision_layers=4, vision_heads=4, image_size=112, patch_size=14),
}


def bench(name: str, exit_layer: int, device: str, work: Path, n: int = 32) -> None:
    dims = GEOMETRIES[name]
    model_dir = build_tiny("llava", work / f"model-{name}", dims=dims)
    full = load_model(str(model_dir), device=device)
    spec = resolve_spec("shapes-exist")
    ds = load_dataset(spec.model_copy(update={"params": {"n": n}, "probe_size": n // 2, "eval_size": n - n // 2}))
    store = extract(full, ds, store=str(work / f"{name}.zarr"), layers=f"0-{exit_layer}", baseline=False,
                    progress=False)
    db = str(work / "sn.duckdb")
    run = search(store, db=db, progress=False)
    con = duckdb.connect(db, read_only=True)
    (index,) = con.execute("SELECT neuron FROM top_neurons WHERE run_id = ? AND site = 'mlp' AND layer = ? "
                           "AND polarity != 0 ORDER BY rank LIMIT 1", [run, exit_layer]).fetchone()
    con.close()
    art = export(run, work / f"artifact-{name}", neuron=f"mlp:{exit_layer}:{index}", db=db, verify=False)
    clf = EarlyExitClassifier.load(art, device=device)
    images = [s.load_image() for s in ds.samples]
    questions = [s.question for s in ds.samples]

    one = measure_speedup(clf, full, images[:1], questions[:1], repeats=8)
    batch = measure_speedup(clf, full, images[:16], questions[:16], repeats=3)
    lat_full, lat_exit = one["full_s"], one["early_exit_s"]
    thr_full, thr_exit = 16 / batch["full_s"], 16 / batch["early_exit_s"]
    size_full = (model_dir / "model.safetensors").stat().st_size
    size_exit = (art / "model.safetensors").stat().st_size
    params = sum(p.numel() for p in full.model.parameters())
    print(f"\n[{name}] {params / 1e6:.0f}M parameters, {full.num_layers} decoder layers, exit after layer {exit_layer} "
          f"(mlp neuron {index}), device {device}, {torch.get_num_threads()} threads")
    print(f"  latency (batch 1):     generate {lat_full * 1e3:8.1f} ms   early exit {lat_exit * 1e3:8.1f} ms   "
          f"speed-up {lat_full / lat_exit:5.2f}x")
    print(f"  throughput (batch 16): generate {thr_full:8.1f} /s   early exit {thr_exit:8.1f} /s   "
          f"speed-up {thr_exit / thr_full:5.2f}x")
    print(f"  weights: full {size_full / 1e6:8.1f} MB   artifact {size_exit / 1e6:8.1f} MB   "
          f"({size_exit / size_full:.1%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--geometry", choices=[*GEOMETRIES, "all"], default="all")
    parser.add_argument("--exit-layer", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    names = list(GEOMETRIES) if args.geometry == "all" else [args.geometry]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            bench(name, args.exit_layer, args.device, Path(tmp))


if __name__ == "__main__":
    main()
