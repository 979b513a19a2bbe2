"""Resolve a model argument (built-in tiny name, local directory or hub id) and load it behind its family adapter."""

from __future__ import annotations

import difflib
import json
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from .. import checks
from ..errors import SnError
from ..workspace import subdir
from .base import Adapter, adapter_class, registered

if TYPE_CHECKING:
    import torch

# Trained models that ship inside the package (folders of sn_store/models/shipped/), by built-in name.
SHIPPED = {"sn-tiny-llava": "sn-tiny-llava"}


def _tiny_names() -> dict[str, str]:
    return {cls.tiny_name: model_type for model_type, cls in registered().items()}


def shipped_dir(name: str) -> Path:
    """The package folder of a shipped model (a plain directory: the package is installed unzipped)."""
    return Path(str(resources.files("sn_store.models") / "shipped" / SHIPPED[name]))


def resolve_model(name: str) -> str:
    """A local directory for built-in names (shipped, or random tiny ones built on first use) and paths; hub ids
    are returned unchanged."""
    if name in SHIPPED:
        path = shipped_dir(name)
        if not (path / "config.json").is_file():
            raise SnError(f"model {name!r}: the shipped model is missing from {path} (reinstall sn_store)")
        return str(path)
    tiny = _tiny_names()
    if name in tiny:
        target = subdir("models") / name
        if not (target / "config.json").exists():
            from .tiny import build_tiny

            # Build beside the target and rename: a concurrent or killed build never leaves a half model.
            tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
            build_tiny(tiny[name], tmp)
            try:
                os.replace(tmp, target)
            except OSError:  # another process won the race
                shutil.rmtree(tmp, ignore_errors=True)
        return str(target)
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists():
        raise SnError(f"model {name!r}: {path} is a file, not a model folder")
    if name.startswith((".", "/", "~")) or name.strip("/").count("/") > 1:  # a hub id is NAME or ORG/NAME
        raise SnError(f"model {name!r}: the folder {path.absolute()} does not exist")
    close = difflib.get_close_matches(name, [*SHIPPED, *tiny], n=1, cutoff=0.75) if "/" not in name else []
    if close:  # a mistyped built-in name would otherwise spend a minute on hub retries
        raise SnError(f"model {name!r}: not a built-in name; did you mean {close[0]}? (built-in: "
                      f"{', '.join([*SHIPPED, *sorted(tiny)])})")
    return name  # a hub id


def default_dtype(device: str) -> torch.dtype:
    import torch

    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def load_model(name: str, dtype: torch.dtype | str | None = None, device: str | None = None) -> Adapter:
    """Load model `name` with `AutoModelForImageTextToText` and wrap it in its family adapter."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    path = resolve_model(name)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        if not Path(path).is_dir():  # a hub id with no local copy, offline or unknown
            raise SnError(f"model {name!r}: not a local folder and not loadable from the hub cache or the hub "
                          f"({str(exc).splitlines()[0]}); download it where there is network (`hf download {name} "
                          "--local-dir DIR`) and pass --model DIR") from None
        raise SnError(f"model {name!r}: cannot read its config ({str(exc).splitlines()[0]})") from None
    family = adapter_class(config.model_type)
    import torch

    device = checks.device(device) if device else ("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(dtype, str):
        dtype = getattr(torch, checks.model_dtype(dtype))
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own bar reports the work that matters
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype or default_dtype(device),
                                                        trust_remote_code=False)
    model.to(device).eval()
    return family(model, family.load_processor(path), source=name)


def config_hash(adapter: Adapter) -> str:
    """A short content hash of the model config: identifies the weights' geometry in provenance attrs."""
    import hashlib

    text = json.dumps(adapter.model.config.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
