"""How far apart repeated speed-up measurements of one artifact land: the old way (one warm-up, two timed calls of
each, ratio of the means) against `predict.measure_speedup` (two warm-ups, seven interleaved rounds, median ratio).

    python benchmarks/bench_speedup_spread.py [--times 6] [--model sn-tiny-llava] [--exit-layer 1]

Builds one artifact (the best `mlp` neuron of the exit layer on a small shapes-exist store), then measures its
speed-up over `generate` `--times` times with each method on the same 8 samples and prints each method's figures,
their spread (max/min) and the interquartile range the new method reports with each figure.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import torch

from sn_store.artifact import EarlyExitClassifier
from sn_store.datasets import load_dataset, resolve_spec
from sn_store.export import export
from sn_store.extract import extract
from sn_store.models import load_model
from sn_store.predict import measure_speedup
from sn_store.search import search


def legacy_speedup(clf, full, images, questions, repeat: int = 2) -> float:
    """The measurement before this benchmark's change: one warm-up, `repeat` timed calls of each, back to back."""
    def generate():
        inputs = full.to_device(full.build_inputs(images, questions))
        full.model.generate(**inputs, max_new_tokens=1, do_sample=False, pad_token_id=full.tokenizer.pad_token_id)

    def early():
        clf.predict_indices(images, questions, batch_size=len(questions))

    def seconds(fn):
        fn()
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        return (time.perf_counter() - start) / repeat

    with torch.inference_mode():
        return seconds(generate) / seconds(early)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, default=6)
    parser.add_argument("--model", default="sn-tiny-llava")
    parser.add_argument("--exit-layer", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        full = load_model(args.model, device="cpu")
        spec = resolve_spec("shapes-exist")
        ds = load_dataset(spec.model_copy(update={"params": {**spec.params, "n": 32}, "probe_size": 16,
                                                  "eval_size": 16}))
        store = extract(full, ds, store=str(work / "s.zarr"), sites="mlp", layers=f"0-{args.exit_layer}",
                        progress=False)
        db = str(work / "sn.duckdb")
        run = search(store, db=db, progress=False)
        con = duckdb.connect(db, read_only=True)
        (index,) = con.execute("SELECT neuron FROM top_neurons WHERE run_id = ? AND layer = ? AND polarity != 0 "
                               "ORDER BY rank LIMIT 1", [run, args.exit_layer]).fetchone()
        con.close()
        art = export(run, work / "artifact", neuron=f"mlp:{args.exit_layer}:{index}", db=db, verify=False)
        clf = EarlyExitClassifier.load(art, device="cpu")
        images = [s.load_image() for s in ds.samples[:8]]
        questions = [s.question for s in ds.samples[:8]]
        old = [legacy_speedup(clf, full, images, questions) for _ in range(args.times)]
        new = [measure_speedup(clf, full, images, questions) for _ in range(args.times)]
    print(f"{args.model}, exit layer {args.exit_layer}, batch 8, {torch.get_num_threads()} threads, "
          f"{args.times} measurements each")
    medians = [m["speedup"] for m in new]
    for name, figures in (("before (1 warm-up, mean of 2)", old), ("after (median of 7 interleaved)", medians)):
        print(f"  {name:34s} " + " ".join(f"{x:5.2f}x" for x in figures) +
              f"   median {statistics.median(figures):.2f}x, range {min(figures):.2f}-{max(figures):.2f}x "
              f"(max/min {max(figures) / min(figures):.2f})")
    print("  reported IQR of each 'after' figure: " +
          " ".join(f"{m['speedup_q1']:.2f}-{m['speedup_q3']:.2f}" for m in new))


if __name__ == "__main__":
    main()
