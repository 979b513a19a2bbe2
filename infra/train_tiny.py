"""Train the shipped default model `sn-tiny-llava`: a tiny LLaVA (real HF classes) taught the synthetic shapes suite.

    .venv/bin/python infra/train_tiny.py                       # writes sn_store/models/shipped/sn-tiny-llava/

The model is built by `sn_store.models.tiny.build_tiny("llava", ...)` (random weights, locally trained tokenizer and
processor), then trained on a mix of the four synthetic tasks (exist, color, count, position) drawn with TRAINING
seeds, different from the built-in specs' seeds, so the specs' probe and eval images are held out. The loss is the
cross-entropy of the answer's first token (the class verbalizer token) at the last prompt position: exactly the
token the pipeline reads as the model's own answer. Deterministic: fixed seeds, fixed data order, fixed threads.
At the end the model answers each built-in spec's eval split; the per-task table goes to stdout and the model card.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import transformers

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sn_store.datasets import load_dataset, resolve_spec  # noqa: E402
from sn_store.models import load_model  # noqa: E402
from sn_store.models.tiny import TinyDims, build_tiny  # noqa: E402

TRAIN_SPECS = ["shapes-exist", "shapes-color", "shapes-count", "shapes-position"]  # the tasks taught
EVAL_SPECS = TRAIN_SPECS + ["shapes-exist-shift"]  # the shift variant is never trained on
TRAIN_SEED = 1000  # task i is drawn with seed TRAIN_SEED + i; the built-in specs use seeds 0 and 1
DIMS = TinyDims(hidden=96, layers=4, intermediate=192, heads=4, kv_heads=2, vision_hidden=64, vision_layers=2,
                vision_heads=2, image_size=32, patch_size=8)
DEFAULT_OUT = ROOT / "sn_store" / "models" / "shipped" / "sn-tiny-llava"


def training_set(spec_name: str, seed: int, n: int):
    """`n` samples of a built-in task drawn with another seed, questions built by the dataset layer itself."""
    spec = resolve_spec(spec_name)
    update = {"seed": seed, "params": {**spec.params, "n": n}, "probe_size": n - n // 2, "eval_size": n // 2}
    return load_dataset(spec.model_copy(update=update))


def encode(adapter, samples, targets: list[int], chunk: int = 512):
    """Model inputs for every sample (left padded to a common length) and its target token."""
    parts = [adapter.build_inputs([s.load_image() for s in samples[i : i + chunk]],
                                  [s.question for s in samples[i : i + chunk]]) for i in range(0, len(samples), chunk)]
    width = max(p["input_ids"].shape[1] for p in parts)
    pad = adapter.tokenizer.pad_token_id

    def left_pad(t, value):
        return torch.nn.functional.pad(t, (width - t.shape[1], 0), value=value)

    inputs = {
        "input_ids": torch.cat([left_pad(p["input_ids"], pad) for p in parts]),
        "attention_mask": torch.cat([left_pad(p["attention_mask"], 0) for p in parts]),
        "pixel_values": torch.cat([p["pixel_values"] for p in parts]),
    }
    return inputs, torch.tensor(targets)


def batch(inputs: dict, idx: torch.Tensor) -> dict:
    """Rows `idx`, with the all-padding columns on the left dropped (a shorter sequence, same answer)."""
    sub = {k: v[idx] for k, v in inputs.items()}
    keep = int(sub["attention_mask"].sum(0).nonzero()[0])
    return {**sub, "input_ids": sub["input_ids"][:, keep:], "attention_mask": sub["attention_mask"][:, keep:]}


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    return float(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg)))


@torch.no_grad()
def evaluate(adapter, spec_name: str, split: str = "eval", batch_size: int = 64) -> dict:
    """The model's own answer (argmax over the class verbalizers' first tokens) on a spec's split: accuracy, and for
    two classes the AUROC of the logit margin (how well the answer separates the classes, whatever its bias)."""
    ds = load_dataset(spec_name)
    samples = [s for s, sp in zip(ds.samples, ds.split) if sp == split]
    ids = adapter.verbalizer_ids(ds.spec.class_verbalizers)
    adapter.model.eval()
    logits = []
    for i in range(0, len(samples), batch_size):
        part = samples[i : i + batch_size]
        inputs = adapter.build_inputs([s.load_image() for s in part], [s.question for s in part])
        logits.append(adapter.model(**inputs, logits_to_keep=1).logits[:, -1, ids])
    logits = torch.cat(logits).numpy()
    labels = np.array([s.label for s in samples])
    margin = auroc(labels, logits[:, 1] - logits[:, 0]) if len(ids) == 2 else float("nan")
    return {"acc": float((logits.argmax(-1) == labels).mean()), "auroc": margin, "n": len(samples)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=0, help="weight initialisation and data order")
    ap.add_argument("--n-per-task", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--dim", action="append", default=[], metavar="FIELD=INT",
                    help="override one TinyDims field of the default geometry, e.g. --dim layers=6")
    ap.add_argument("--threads", type=int, default=2, help="fixed, for bitwise-reproducible CPU sums")
    args = ap.parse_args(argv)

    dims = dataclasses.replace(DIMS, **{k: int(v) for k, v in (d.split("=", 1) for d in args.dim)})
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    work = args.out.with_name(args.out.name + ".building")
    shutil.rmtree(work, ignore_errors=True)
    build_tiny("llava", work, seed=args.seed, dims=dims)
    adapter = load_model(str(work), device="cpu", dtype=torch.float32)
    model = adapter.model

    # Training data: every task, drawn with training seeds; one pool, a fixed shuffled order per epoch.
    samples, targets = [], []
    for t, name in enumerate(TRAIN_SPECS):
        ds = training_set(name, TRAIN_SEED + t, args.n_per_task)
        ids = adapter.verbalizer_ids(ds.spec.class_verbalizers)
        assert len(set(ids)) == len(ids), f"{name}: verbalizers share a first token"
        samples += ds.samples
        targets += [ids[s.label] for s in ds.samples]
    # A lone shape can rasterise identically under another seed: drop training images equal to any built-in image.
    held_out = {s.image_digest() for name in EVAL_SPECS for s in load_dataset(name).samples}
    keep = [i for i, s in enumerate(samples) if s.image_digest() not in held_out]
    dropped = len(samples) - len(keep)
    pool, targets = encode(adapter, [samples[i] for i in keep], [targets[i] for i in keep])
    n = len(targets)
    prep_s = time.perf_counter() - start
    print(f"built model and {n} training samples ({len(TRAIN_SPECS)} tasks) in {prep_s:.1f}s; "
          f"dropped {dropped} equal to a built-in spec's image", flush=True)

    decay = [p for name, p in model.named_parameters() if p.ndim >= 2]
    other = [p for name, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": other, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / args.warmup) * 0.5 * (
        1 + math.cos(math.pi * min(s, args.steps) / args.steps)))
    order = np.concatenate([np.random.default_rng(args.seed + e).permutation(n)
                            for e in range(math.ceil(args.steps * args.batch_size / n))])
    model.train()
    train_start = time.perf_counter()
    running = None
    for step in range(args.steps):
        idx = torch.from_numpy(order[step * args.batch_size : (step + 1) * args.batch_size])
        logits = model(**batch(pool, idx), logits_to_keep=1).logits[:, -1]
        loss = torch.nn.functional.cross_entropy(logits.float(), targets[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss {running:.3f}  lr {schedule.get_last_lr()[0]:.2e}  "
                  f"{time.perf_counter() - train_start:.0f}s", flush=True)
    train_s = time.perf_counter() - train_start
    model.eval()

    results = {name: evaluate(adapter, name) for name in EVAL_SPECS}
    total_s = time.perf_counter() - start
    table = ["| dataset | task | classes | chance | eval accuracy | margin AUROC | n |", "|---" * 7 + "|"]
    for name, r in results.items():
        spec = resolve_spec(name)
        trained = "" if name in TRAIN_SPECS else " (never trained on)"
        margin = "-" if math.isnan(r["auroc"]) else f"{r['auroc']:.3f}"
        table.append(f"| {name}{trained} | {spec.source} | {len(spec.classes)} | {1 / len(spec.classes):.2f} "
                     f"| {r['acc']:.3f} | {margin} | {r['n']} |")
    print("\n".join(table))

    model.save_pretrained(work, safe_serialization=True)
    adapter.processor.save_pretrained(work)
    command = " ".join([".venv/bin/python infra/train_tiny.py", *(argv if argv is not None else sys.argv[1:])])
    settings = dict(command=command, seed=args.seed, n_per_task=args.n_per_task, steps=args.steps,
                    batch_size=args.batch_size,
                    lr=args.lr, warmup=args.warmup, threads=args.threads)
    (work / "README.md").write_text(card(model, settings, dims, table, n, dropped, train_s, total_s))
    for f in work.iterdir():
        f.chmod(0o644)  # safetensors writes 0600; package data must be readable by every user
    shutil.rmtree(args.out, ignore_errors=True)
    work.rename(args.out)
    size = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"saved {args.out} ({size / 1e6:.1f} MB) in {total_s:.0f}s total ({train_s:.0f}s training)")
    return 0


def card(model, settings: dict, dims: TinyDims, table: list[str], n: int, dropped: int, train_s: float,
         total_s: float) -> str:
    return f"""# sn-tiny-llava

The embedded default model of sn_store: a tiny LLaVA (`LlavaForConditionalGeneration`: CLIP vision tower, MLP
projector, Llama decoder; real `transformers` classes) trained for a few CPU minutes on the synthetic shapes suite.
Its own answers are above chance and imperfect on every task it was trained on, so Super Neurons have something to
find and something to beat. It is a toy: it knows drawn circles, squares and triangles in four colours, and nothing
else.

## How it was made

- Script: `infra/train_tiny.py` (in the sn_store repository), run as `{settings['command']}`
  ({platform.machine()}, torch {torch.__version__}, transformers {transformers.__version__}).
- Architecture: `sn_store.models.tiny.build_tiny("llava", dir, seed={settings['seed']}, dims=TinyDims(...))`
  with `{dataclasses.asdict(dims)}`; byte-level BPE tokenizer (512 tokens) trained locally by
  `sn_store.models.tokenizer`. {sum(p.numel() for p in model.parameters()):,} parameters, float32, safetensors.
- Data: {settings['n_per_task']} samples drawn for each of {", ".join(TRAIN_SPECS)} (the built-in specs'
  generators and prompts, balanced classes) with seeds {TRAIN_SEED}..{TRAIN_SEED + len(TRAIN_SPECS) - 1}; the built-in
  specs use seeds 0 and 1, so their probe and eval images are held out. The {dropped} training images that
  coincided pixel for pixel with a built-in spec's image (a lone shape can rasterise identically) were dropped:
  {n} training samples in all. `shapes-exist-shift` (lighter background, smaller shapes) is never trained on.
- Objective: cross-entropy of the answer's first token (the class verbalizer's first token) over the whole vocabulary,
  at the last prompt position, with the prompt `USER: <image>\\n{{question}}\\n{{task suffix}} ASSISTANT:`.
- Optimiser: AdamW (lr {settings['lr']}, betas (0.9, 0.98), weight decay 0.01 on matrices), linear warm-up over
  {settings['warmup']} steps, then cosine decay to 0; gradient clipping at 1.0; {settings['steps']} steps of batch
  {settings['batch_size']} in a fixed shuffled order (seed {settings['seed']}).
- Time: {train_s:.0f} s of training, {total_s:.0f} s in all (building, data, training, evaluation), on
  {settings['threads']} CPU threads.

## Evaluation

The model's own answer (argmax of the first-token logits over each class's verbalizer token, as `sn extract`
records it) on each built-in spec's eval split (held-out images). Margin AUROC (two classes): how well the logit
margin between the two verbalizers separates the classes, whatever threshold; under the shift the answer collapses
towards one class while the margin still carries the label: a case where a threshold refitted on the new probe
split (a Super Neuron, or the margin itself) beats the model's own answer.

{chr(10).join(table)}

Reproduce: `.venv/bin/python infra/train_tiny.py --out /tmp/sn-tiny-llava` (same seed, same thread count).
"""


if __name__ == "__main__":
    raise SystemExit(main())
