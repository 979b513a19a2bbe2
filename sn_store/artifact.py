"""Early-exit artifacts: the few weights a Super Neuron classifier needs, a manifest, verified loading, prediction.

An artifact directory holds `config.json` (the model's config with the decoder cut after the exit layer),
`model.safetensors` (vision tower, projector, embeddings, decoder layers up to the exit layer, and in the exit layer
nothing after the modules that hold the neurons), the processor and tokenizer files, and `manifest.json` (see
`sn_store.manifest`: neurons, classes, prompt, metrics, the digest of every other file and of its own body).
Loading refuses any file that is missing, changed, not listed, a link or code, checks the model type before
transformers reads anything, and never runs code from the artifact. Nothing is pickled. Export builds the artifact
in a staging folder beside its destination and renames it into place: it never deletes what is not an artifact.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import re
import shutil
import stat
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__, checks
from .errors import SnError
from .evaluate import Neuron, vote_margins
from .manifest import (
    CONFIG,
    FORMAT,
    MANIFEST,
    STAGING,
    WEIGHTS,
    Manifest,
    ManifestNeuron,
    looks_like_artifact,
    verify,
    write_manifest,
)
from .models import Adapter, adapter_class

__all__ = ["FORMAT", "MANIFEST", "WEIGHTS", "EarlyExitClassifier", "build", "staging"]


# --- the exit ----------------------------------------------------------------------------------------------------
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


class Taps:
    """The exit neurons' values at the last position, read by the adapter's recorder, which stops the pass once
    every site they live in has fired."""

    def __init__(self, adapter: Adapter, neurons: list[Neuron], plan: ExitPlan):
        self.neurons, self.plan = neurons, plan
        self.recorder = adapter.recorder({(n.layer, n.site) for n in neurons}, stop=True).attach()

    def _column(self, n: Neuron) -> int:
        """Where neuron `n` is in its site's vector (the exit layer's trimmed mlp keeps only the needed rows)."""
        trimmed = n.site == "mlp" and n.layer == self.plan.exit_layer and not self.plan.full_last
        return self.plan.mlp_rows.index(n.index) if trimmed else n.index

    def values(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(batch, n_neurons) on the model's device."""
        self.recorder.run(inputs)
        got = self.recorder.values
        return torch.stack([got[(n.layer, n.site)][:, self._column(n)] for n in self.neurons], dim=1)


# --- the classifier ----------------------------------------------------------------------------------------------
class EarlyExitClassifier:
    """A Super Neuron classifier that runs the model only up to its exit layer.

    `EarlyExitClassifier.load(dir).predict(images, questions)` returns class names.
    """

    def __init__(self, adapter: Adapter, manifest: Manifest, recorded: bool | None = None):
        self.adapter = adapter
        self.manifest = manifest
        self.recorded = recorded  # whether the leaderboard given to `load` recorded this manifest (None: none given)
        self.neurons = manifest.neuron_list()
        self.classes: list[str] = list(manifest.classes)
        self.plan = ExitPlan.of(self.neurons)
        self.activation_dtype = getattr(np, manifest.activation_dtype)
        self._taps = Taps(adapter, self.neurons, self.plan)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, db: str | Path | None = None,
             finished_only: bool = True) -> EarlyExitClassifier:
        """Verify every file against the manifest and, given a leaderboard `db`, the manifest against the digest
        recorded at export; check the model type; then build the truncated model from the artifact alone, running
        none of its code. `finished_only=False` is for export's own check, before it finishes the artifact."""
        from transformers import AutoModelForImageTextToText
        from transformers.initialization import no_init_weights

        path = Path(path)
        manifest = verify(path, finished_only)
        recorded = None if db is None else check_recorded(db, path, manifest)
        config = _config(path, manifest)
        family = adapter_class(config.model_type)
        device = checks.device(device) if device else ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = getattr(torch, manifest.model.dtype)
        with no_init_weights():  # every weight comes from the artifact: skip random initialisation
            model = AutoModelForImageTextToText.from_config(config, dtype=dtype, trust_remote_code=False)
        adapter = family(model, family.load_processor(str(path)), source=manifest.model.id)
        _check_widths(path, adapter, manifest)
        adapter.trim(ExitPlan.of(manifest.neuron_list()))
        try:
            model.load_state_dict(_weights(path), strict=True)
        except RuntimeError as exc:
            raise SnError(f"artifact {path}: weights do not fit the manifest's neurons ({str(exc)[:200]})") from None
        model.to(device).eval()
        return cls(adapter, manifest, recorded)

    def activations(self, images: list, questions: list[str]) -> np.ndarray:
        """(batch, n_neurons) exit-neuron values, rounded to the store's dtype as the search saw them."""
        inputs = self.adapter.to_device(self.adapter.build_inputs(images, questions))
        with torch.inference_mode():
            values = self._taps.values(inputs)
        return values.cpu().numpy().astype(self.activation_dtype)

    def question(self, text: str) -> str:
        """The user text as the dataset layer built it for the search: the question and the task suffix."""
        suffix = self.manifest.task_suffix
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


# --- loading checks ----------------------------------------------------------------------------------------------
def check_recorded(db: str | Path, path: Path, manifest: Manifest) -> bool | None:
    """Whether the leaderboard `db` recorded this manifest's digest at export (None: no such database). Refuses an
    artifact at a path the leaderboard recorded with another digest: its manifest was edited since."""
    from . import leaderboard

    if not Path(db).exists():
        return None
    rows = leaderboard.artifact_rows(db)
    if any(r.get("manifest_digest") == manifest.digest for r in rows):
        return True
    here = str(path.resolve())
    for r in rows:
        if r["path"] == here and r.get("manifest_digest"):
            raise SnError(f"artifact {path}: {MANIFEST}: digest {manifest.digest} is not the {r['manifest_digest']} "
                          f"that {db} recorded at export (the manifest was edited)")
    return False


def _config(path: Path, manifest: Manifest):
    """The artifact's config, its model type checked against the manifest and the registered families before
    transformers reads it; transformers then never runs code that came with the artifact (`auto_map`)."""
    from transformers import AutoConfig

    where = f"artifact {path}: {CONFIG}"
    try:
        raw = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except RecursionError:
        raise SnError(f"{where}: nested too deeply") from None
    except (OSError, ValueError) as exc:
        raise SnError(f"{where}: unreadable ({exc})") from None
    model_type = raw.get("model_type") if isinstance(raw, dict) else None
    if model_type != manifest.model.model_type:
        raise SnError(f"{where}: field model_type {model_type!r} is not the manifest's {manifest.model.model_type!r}")
    try:
        adapter_class(model_type)
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    except (SnError, OSError, ValueError, TypeError) as exc:
        raise SnError(f"{where}: {str(exc).splitlines()[0]}") from None
    layers = config.get_text_config().num_hidden_layers
    if layers != manifest.exit_layer + 1:
        raise SnError(f"{where}: field num_hidden_layers {layers} does not fit the manifest's exit_layer "
                      f"{manifest.exit_layer}")
    return config


def _check_widths(path: Path, adapter: Adapter, manifest: Manifest) -> None:
    for i, n in enumerate(manifest.neurons):
        width = adapter.site_width(n.site)
        if n.index >= width:
            raise SnError(f"artifact {path}: {MANIFEST}: field neurons.{i}.index {n.index} is past the {n.site} "
                          f"width {width}")


def _weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path / WEIGHTS)
    except (SafetensorError, OSError, ValueError) as exc:
        raise SnError(f"artifact {path}: {WEIGHTS}: not a readable safetensors file ({exc})") from None


# --- writing -------------------------------------------------------------------------------------------------------
def build(adapter: Adapter, neurons: list[Neuron], out: Path, **fields) -> Manifest:
    """Write the artifact of `neurons` from a loaded full model into the empty directory `out` (trims `adapter`);
    `fields` are the manifest's other fields. The manifest is written last, not yet finished."""
    plan = ExitPlan.of(neurons)
    config = adapter.trimmed_config(adapter.model.config, plan.exit_layer)
    adapter.trim(plan)
    state = {k: v.contiguous() for k, v in adapter.model.state_dict().items()}
    save_file(state, out / WEIGHTS, metadata={"format": "pt"})
    config.save_pretrained(out)
    adapter.processor.save_pretrained(out)
    return write_manifest(out, Manifest(format=FORMAT, sn_store_version=__version__, exit_layer=plan.exit_layer,
                                        neurons=[ManifestNeuron.of(n) for n in neurons], **fields))


def check_destination(out: Path) -> None:
    """Refuse an export destination that is not absent, an empty folder, or an sn_store artifact and nothing else:
    export replaces only its own work."""
    where = f"--out {out}"
    here = Path.cwd().resolve()
    if out.resolve() == here or out.resolve() in here.parents:
        raise SnError(f"{where}: is the current folder or holds it; name a new folder for the artifact")
    try:
        mode = os.lstat(out).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise SnError(f"{where}: is a symbolic link; name a new folder for the artifact")
    if not stat.S_ISDIR(mode):
        raise SnError(f"{where}: is an existing file, not an artifact folder; nothing was changed")
    if any(out.iterdir()) and not looks_like_artifact(out):
        raise SnError(f"{where}: exists and is not an sn_store artifact (no {MANIFEST} of ours, or files it does not "
                      "list); nothing was changed: name a new or empty folder")


def _remove_stale(out: Path) -> None:
    """Remove the staging folders of killed exports to `out`: exactly the names `staging` makes (mkdtemp's 8
    characters), not a user's look-alike; a running export holds a lock on its own."""
    made = re.compile(re.escape(f".{out.name}{STAGING}") + "[a-z0-9_]{8}")
    for p in out.parent.iterdir():
        if not made.fullmatch(p.name) or not stat.S_ISDIR(os.lstat(p).st_mode):
            continue
        fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        else:
            shutil.rmtree(p, ignore_errors=True)
        finally:
            os.close(fd)


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux `renameat2(RENAME_EXCHANGE)`); False where the system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _put(tmp: Path, out: Path) -> None:
    """Move the finished `tmp` to `out`; an artifact already there is swapped out to `tmp`, never deleted first."""
    if not out.exists() or not any(out.iterdir()):
        os.replace(tmp, out)  # nothing there, or an empty folder: one rename
    elif not _exchange(tmp, out):
        aside = tmp.with_name(tmp.name + "-old")
        os.rename(out, aside)
        os.rename(tmp, out)
        os.rename(aside, tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def staging(out: Path, check=check_destination):
    """A new folder beside `out` (`.NAME.staging-XXXX`), moved to `out` when the block succeeds and removed when
    it fails. `out` must pass `check` (an export's destination; reports bring theirs), before and after. Staging
    folders that killed exports to `out` left are removed first."""
    check(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SnError(f"--out {out}: cannot create its parent folder ({exc.strerror})") from None
    _remove_stale(out)
    while True:
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}{STAGING}"))
        lock = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(lock, fcntl.LOCK_EX)  # waits while another export's clean-up holds it
        if os.fstat(lock).st_nlink:  # not taken for a dead export's folder between mkdtemp and the lock
            break
        os.close(lock)
    try:
        yield tmp
        check(out)  # the export took a while: look again
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700: give it the mode a new folder gets
        _put(tmp, out)
    finally:
        os.close(lock)
        shutil.rmtree(tmp, ignore_errors=True)  # a failed build, or the artifact `out` held before
