"""Early-exit artifacts: the few weights a Super Neuron classifier needs, a manifest, verified loading, prediction.

An artifact directory holds `config.json` (the model's config with the decoder cut after the exit layer),
`model.safetensors` (vision tower, projector, embeddings, decoder layers up to the exit layer, and in the exit layer
nothing after the modules that hold the neurons), the processor and tokenizer files, and `manifest.json`
(neurons, classes, prompt, metrics, and the sha256 of every other file). Loading refuses any file that is missing,
changed, or not listed. Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from . import __version__
from .errors import SnError
from .evaluate import Neuron, vote_margins
from .models import Adapter, adapter_class
from .models.base import StopForward, execution_order

FORMAT = 1
MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
def neuron_json(n: Neuron) -> dict:
    return {**asdict(n), "threshold": _json_float(n.threshold)}


def neuron_from_json(d: dict) -> Neuron:
    return Neuron(**{**d, "threshold": float(d["threshold"])})


def _json_float(x: float) -> float | str:
    """JSON has no infinity: the constant classifiers' thresholds are written as the strings "inf" / "-inf"."""
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


# --- trimming the model ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExitPlan:
    """Which parts of the exit layer the neurons need."""

    exit_layer: int
    full_last: bool  # a resid neuron in the exit layer needs the whole layer
    mlp_rows: tuple[int, ...]  # mlp neurons in the exit layer: only their gate/up rows

    @classmethod
    def of(cls, neurons: list[Neuron]) -> ExitPlan:
        exit_layer = max(n.layer for n in neurons)
        last = [n for n in neurons if n.layer == exit_layer]
        full = any(n.site == "resid" for n in last)
        rows = () if full else tuple(sorted({n.index for n in last if n.site == "mlp"}))
        return cls(exit_layer, full, rows)


def _rows(linear: torch.nn.Linear, rows: tuple[int, ...]) -> torch.nn.Linear:
    out = torch.nn.Linear(linear.in_features, len(rows), bias=linear.bias is not None,
                          dtype=linear.weight.dtype, device=linear.weight.device)
    with torch.no_grad():
        out.weight.copy_(linear.weight[list(rows)])
        if linear.bias is not None:
            out.bias.copy_(linear.bias[list(rows)])
    return out


def trim(adapter: Adapter, plan: ExitPlan) -> None:
    """Cut the model in place after what the exit needs: later layers, final norm, LM head, and the tail of the
    exit layer (the modules after the neurons become identities and are never run: the last tap stops the pass)."""
    decoder = adapter.decoder
    decoder.layers = decoder.layers[: plan.exit_layer + 1]
    decoder.norm = torch.nn.Identity()
    adapter.model.lm_head = torch.nn.Identity()
    if plan.full_last:
        return
    layer = decoder.layers[plan.exit_layer]
    if plan.mlp_rows:
        layer.mlp.gate_proj = _rows(layer.mlp.gate_proj, plan.mlp_rows)
        layer.mlp.up_proj = _rows(layer.mlp.up_proj, plan.mlp_rows)
        layer.mlp.down_proj = torch.nn.Identity()
    else:
        layer.mlp = torch.nn.Identity()
        layer.self_attn.o_proj = torch.nn.Identity()


def trimmed_config(config, exit_layer: int):
    config = config.__class__.from_dict(config.to_dict())
    text = config.get_text_config()
    text.num_hidden_layers = exit_layer + 1
    if getattr(text, "layer_types", None):
        text.layer_types = text.layer_types[: exit_layer + 1]
    return config


# --- reading the neurons -----------------------------------------------------------------------------------------
class Taps:
    """Forward hooks that read each exit neuron at the last position; the last one in execution order stops."""

    def __init__(self, adapter: Adapter, neurons: list[Neuron], plan: ExitPlan):
        self.adapter, self.neurons, self.plan = adapter, neurons, plan
        self.values: torch.Tensor | None = None

    def _column(self, n: Neuron) -> int:
        trimmed = n.site == "mlp" and n.layer == self.plan.exit_layer and not self.plan.full_last
        return self.plan.mlp_rows.index(n.index) if trimmed else n.index

    def attach(self) -> list:
        groups: dict[tuple[int, str], list[tuple[int, int]]] = {}
        for j, n in enumerate(self.neurons):
            groups.setdefault((n.layer, n.site), []).append((j, self._column(n)))
        last = max(groups, key=execution_order)
        return [self.adapter.hook_site(layer, site, self._recorder(cols, (layer, site) == last))
                for (layer, site), cols in groups.items()]

    def _recorder(self, cols: list[tuple[int, int]], stop: bool):
        dest = [j for j, _ in cols]
        src = [c for _, c in cols]

        def record(x):
            self.values[:, dest] = x[:, -1, src].float()
            if stop:
                raise StopForward

        return record


# --- the classifier ----------------------------------------------------------------------------------------------
class EarlyExitClassifier:
    """A Super Neuron classifier that runs the model only up to its exit layer.

    `EarlyExitClassifier.load(dir).predict(images, questions)` returns class names.
    """

    def __init__(self, adapter: Adapter, manifest: dict):
        self.adapter = adapter
        self.manifest = manifest
        self.neurons = [neuron_from_json(n) for n in manifest["neurons"]]
        self.classes: list[str] = manifest["classes"]
        self.plan = ExitPlan.of(self.neurons)
        self.activation_dtype = getattr(np, manifest["activation_dtype"])
        self._taps = Taps(adapter, self.neurons, self.plan)
        self._handles = self._taps.attach()

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> EarlyExitClassifier:
        """Verify every file against the manifest, then build the truncated model from the artifact alone."""
        from transformers import AutoConfig, AutoModelForImageTextToText
        from transformers.initialization import no_init_weights

        path = Path(path)
        manifest = verify(path)
        config = AutoConfig.from_pretrained(path)
        family = adapter_class(config.model_type)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = getattr(torch, manifest["model"]["dtype"])
        with no_init_weights():  # every weight comes from the artifact: skip random initialisation
            model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
        adapter = family(model, family.load_processor(str(path)), source=manifest["model"]["id"])
        trim(adapter, ExitPlan.of([neuron_from_json(n) for n in manifest["neurons"]]))
        try:
            model.load_state_dict(load_file(path / WEIGHTS), strict=True)
        except RuntimeError as exc:
            raise SnError(f"artifact {path}: weights do not fit the manifest's neurons ({str(exc)[:200]})") from None
        model.to(device).eval()
        return cls(adapter, manifest)

    def activations(self, images: list, questions: list[str]) -> np.ndarray:
        """(batch, n_neurons) exit-neuron values, rounded to the store's dtype as the search saw them."""
        inputs = self.adapter.to_device(self.adapter.build_inputs(images, questions))
        self._taps.values = torch.empty((len(questions), len(self.neurons)), device=self.adapter.device)
        with torch.inference_mode():
            self.adapter.forward(inputs)
        return self._taps.values.cpu().numpy().astype(self.activation_dtype)

    def question(self, text: str) -> str:
        """The user text as the dataset layer built it for the search: the question and the task suffix."""
        suffix = self.manifest.get("task_suffix") or ""
        return f"{text}\n{suffix}" if suffix else text

    def predict_indices(self, images: list, questions: list[str], batch_size: int = 16) -> np.ndarray:
        """Class indices; `questions` must already carry the task suffix (see `question`)."""
        out = []
        for a in range(0, len(questions), batch_size):
            acts = self.activations(images[a : a + batch_size], questions[a : a + batch_size])
            out.append(vote_margins(acts, self.neurons, len(self.classes)))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def predict(self, images: list, questions: list[str], batch_size: int = 16) -> list[str]:
        """Class names for one image (PIL) and one plain question per sample; the task suffix is added here."""
        full = [self.question(q) for q in questions]
        return [self.classes[i] for i in self.predict_indices(images, full, batch_size)]


# --- files and hashes --------------------------------------------------------------------------------------------
def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path) -> dict:
    """The manifest, after checking its format and every file's hash; refuses missing, changed and extra files."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        raise SnError(f"artifact {path}: no {MANIFEST} (not an sn_store artifact)") from None
    except (OSError, ValueError) as exc:
        raise SnError(f"artifact {path}: unreadable {MANIFEST} ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "files" not in manifest:
        found = manifest.get("format") if isinstance(manifest, dict) else "?"
        raise SnError(f"artifact {path}: manifest format {found}"
                      f" is not {FORMAT} (made by another sn_store version, or not an sn_store artifact)")
    listed = manifest["files"]
    present = {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()} - {MANIFEST}
    for name in sorted(set(listed) - present):
        raise SnError(f"artifact {path}: file {name} is missing")
    for name in sorted(present - set(listed)):
        raise SnError(f"artifact {path}: file {name} is not in the manifest")
    for name, digest in sorted(listed.items()):
        if sha256(path / name) != digest:
            raise SnError(f"artifact {path}: file {name} does not match its sha256 in the manifest (tampered or "
                          "truncated)")
    return manifest


def write_manifest(path: Path, manifest: dict) -> None:
    files = {str(p.relative_to(path)): sha256(p) for p in sorted(path.rglob("*")) if p.is_file() and p.name != MANIFEST}
    (path / MANIFEST).write_text(json.dumps({**manifest, "files": files}, indent=2, allow_nan=False))


def build(adapter: Adapter, neurons: list[Neuron], out: Path, manifest: dict) -> None:
    """Write the artifact of `neurons` from a loaded full model into the empty directory `out` (trims `adapter`)."""
    plan = ExitPlan.of(neurons)
    config = trimmed_config(adapter.model.config, plan.exit_layer)
    trim(adapter, plan)
    state = {k: v.contiguous() for k, v in adapter.model.state_dict().items()}
    save_file(state, out / WEIGHTS, metadata={"format": "pt"})
    config.save_pretrained(out)
    adapter.processor.save_pretrained(out)
    write_manifest(out, {
        "format": FORMAT, "sn_store_version": __version__, "model": manifest["model"],
        "exit_layer": plan.exit_layer, "neurons": [neuron_json(n) for n in neurons], **manifest["rest"],
    })


@dataclass
class Staging:
    """A temporary directory beside the destination, renamed into place only when complete."""

    out: Path

    def __enter__(self) -> Path:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(dir=self.out.parent, prefix=f".{self.out.name}-"))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.out.exists():
            shutil.rmtree(self.out)
        os.replace(self.tmp, self.out)
