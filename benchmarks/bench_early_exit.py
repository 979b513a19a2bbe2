"""Early exit against the full model answering the same questions with `generate`, same inputs, same device.

    python benchmarks/bench_early_exit.py --geometry llava-1.5-7b|qwen3-vl-8b|mid|tiny [--exits 0,1,2,4,8]
                                          [--device cpu|cuda] [--repeats 5]

For a geometry: builds a random-weight model of its family at that size (the paper's models in bf16: random weights
cost the same as real ones), extracts the `mlp` site of the exit layers for a few synthetic samples, searches them,
exports the best neuron of each exit layer as an artifact, then prints, per exit layer, the latency (batch 1) and
throughput (batch 8) of the artifact and of the full model's `generate(max_new_tokens=1)`, both including
preprocessing, their ratios (median of interleaved rounds, quartiles in brackets), and the weights' sizes.
Memory: the full model is held once at a time (freed while artifacts are exported; loaded weights are memory-mapped);
`llava-1.5-7b` peaked at 22 GB RSS on CPU (13.9 GB of weights), so on a 24 GiB machine run `qwen3-vl-8b` (17.5 GB)
with `--exits 0,1,2,4`. The work folder needs about twice the weights on disk (the model and the artifacts).
"""

from __future__ import annotations

import argparse
import gc
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

# name: (model type, geometry, weights dtype)
GEOMETRIES = {
    "tiny": ("llava", TinyDims(), torch.float32),
    # DESIGN.md's CPU probe geometry: 16 decoder layers, hidden 1024, a 64-token image.
    "mid": ("llava", TinyDims(hidden=1024, layers=16, intermediate=2816, heads=16, kv_heads=16, vision_hidden=256,
                              vision_layers=4, vision_heads=4, image_size=112, patch_size=14), torch.float32),
    # llava-hf/llava-1.5-7b-hf: CLIP ViT-L/14 at 336 px (576 image tokens), Vicuna-7B (Llama) decoder.
    "llava-1.5-7b": ("llava", TinyDims(hidden=4096, layers=32, intermediate=11008, heads=32, kv_heads=32,
                                       vision_hidden=1024, vision_intermediate=4096, vision_layers=24, vision_heads=16,
                                       image_size=336, patch_size=14, vocab=32064), torch.bfloat16),
    # Qwen/Qwen3-VL-8B-Instruct: 27-layer ViT (patch 16, DeepStack), Qwen3-8B decoder.
    "qwen3-vl-8b": ("qwen3_vl", TinyDims(hidden=4096, layers=36, intermediate=12288, heads=32, kv_heads=8,
                                         head_dim=128, vision_hidden=1152, vision_intermediate=4304, vision_layers=27,
                                         vision_heads=16, image_size=448, patch_size=16, vocab=151936),
                    torch.bfloat16),
}


def best_neuron(db: str, run: str, layer: int) -> int:
    con = duckdb.connect(db, read_only=True)
    (index,) = con.execute("SELECT neuron FROM top_neurons WHERE run_id = ? AND site = 'mlp' AND layer = ? "
                           "AND polarity != 0 ORDER BY rank LIMIT 1", [run, layer]).fetchone()
    con.close()
    return index


def weights_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def human(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def bench(name: str, exits: list[int], device: str, work: Path, repeats: int, n: int = 16) -> None:
    family, dims, dtype = GEOMETRIES[name]
    exits = [e for e in exits if e < dims.layers]
    model_dir = build_tiny(family, work / "model", dims=dims, dtype=dtype)
    spec = resolve_spec("shapes-exist")
    # Images at the geometry's input size: a family that tiles by resolution (Qwen) gives a small image few tokens.
    params = {"n": n, "image_size": dims.image_size}
    ds = load_dataset(spec.model_copy(update={"params": params, "probe_size": n // 2, "eval_size": n - n // 2}))
    full = load_model(str(model_dir), dtype=dtype, device=device)
    params = sum(p.numel() for p in full.model.parameters())
    store = extract(full, ds, store=str(work / "s.zarr"), layers=",".join(map(str, exits)), sites="mlp",
                    baseline=False, progress=False)
    del full  # export loads the model itself: hold one copy at a time
    free()
    db = str(work / "sn.duckdb")
    run = search(store, db=db, progress=False, sav=False)
    artifacts = {e: export(run, work / f"exit-{e}", neuron=f"mlp:{e}:{best_neuron(db, run, e)}", db=db,
                           verify=False) for e in exits}
    full = load_model(str(model_dir), dtype=dtype, device=device)
    images = [s.load_image() for s in ds.samples[:8]]
    questions = [s.question for s in ds.samples[:8]]
    size_full = weights_bytes(model_dir)
    print(f"\n[{name}] {family}, {params / 1e6:,.0f}M parameters, {dims.layers} decoder layers, "
          f"{str(dtype).removeprefix('torch.')}, device {device}, {torch.get_num_threads()} threads, "
          f"full weights {human(size_full)}")
    print("| exit layer | latency b1: generate -> early exit | speed-up | throughput b8: generate -> early exit "
          "| speed-up | artifact weights |")
    print("|---|---|---|---|---|---|")
    for e in exits:
        clf = EarlyExitClassifier.load(artifacts[e], device=device)
        one = measure_speedup(clf, full, images[:1], questions[:1], repeats=repeats, warmup=1)
        eight = measure_speedup(clf, full, images, questions, repeats=max(1, repeats // 2), warmup=1)
        size = weights_bytes(artifacts[e])
        print(f"| {e} | {one['full_s'] * 1e3:.1f} ms -> {one['early_exit_s'] * 1e3:.1f} ms "
              f"| {one['speedup']:.2f}x [{one['speedup_q1']:.2f}-{one['speedup_q3']:.2f}] "
              f"| {8 / eight['full_s']:.2f}/s -> {8 / eight['early_exit_s']:.2f}/s "
              f"| {eight['speedup']:.2f}x [{eight['speedup_q1']:.2f}-{eight['speedup_q3']:.2f}] "
              f"| {human(size)} ({size / size_full:.1%}) |", flush=True)
        del clf
        free()


def weight_sizes(name: str, exits: list[int]) -> None:
    """The full model's and each exit's artifact weights (one `mlp` neuron), counted on the meta device: no memory,
    no time, the same surgery (`Adapter.trim`) as an export."""
    from transformers import AutoModelForImageTextToText

    from sn_store.artifact import ExitPlan
    from sn_store.models import adapter_class
    from sn_store.models.recipes import recipe
    from sn_store.models.tokenizer import train_tokenizer

    family, dims, dtype = GEOMETRIES[name]
    kit = recipe(family)
    tokenizer = train_tokenizer(kit.SPECIAL_TOKENS, kit.CHAT_TEMPLATE, getattr(kit, "NAMED_TOKENS", {}))
    config = kit.config(tokenizer, dims)

    def size(exit_layer: int | None) -> int:
        with torch.device("meta"):
            model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
        if exit_layer is not None:
            adapter_class(family)(model, kit.processor(tokenizer, dims)).trim(ExitPlan(exit_layer, False, (0,)))
        return sum(t.numel() * t.element_size() for t in model.state_dict().values())

    full = size(None)
    print(f"[{name}] weights ({str(dtype).removeprefix('torch.')}): full model {human(full)}; artifact of one mlp "
          "neuron at exit layer " + ", ".join(f"{e}: {human(size(e))} ({size(e) / full:.1%})" for e in exits))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--geometry", choices=list(GEOMETRIES), default="mid")
    parser.add_argument("--exits", default="0,1,2,4,8", help="exit layers, e.g. 0,1,2,4,8")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds at batch 1 (half as many at batch 8)")
    parser.add_argument("--work", help="folder for the model, store and artifacts (default: a temporary one)")
    parser.add_argument("--sizes-only", action="store_true", help="only count the weights (meta device, instant)")
    args = parser.parse_args()
    exits = sorted({int(x) for x in args.exits.split(",")})
    if args.sizes_only:
        weight_sizes(args.geometry, exits)
        return
    if args.work:
        bench(args.geometry, exits, args.device, Path(args.work), args.repeats)
        return
    with tempfile.TemporaryDirectory() as tmp:
        bench(args.geometry, exits, args.device, Path(tmp), args.repeats)


if __name__ == "__main__":
    main()
