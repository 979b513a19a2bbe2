"""Checks of user-given settings, each in one place: the CLI's option declarations, the Python API and the probe
flow's config all call these, so a bad value gets the same one-line SnError before any work starts.

Module import is cheap (no torch, no prefect): a check imports what it needs only when it runs.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request

from .errors import SnError

MODEL_DTYPES = ("float32", "bfloat16", "float16")  # weight dtypes a model can be loaded and run in
SITES = ("resid", "mlp", "attn")  # what is read in each decoder layer (models.base knows where each one lives)
_LAYER_PART = re.compile(r"(-?\d+)(?:-(\d+))?")


def layer_list(text: str) -> list[int]:
    """'0,2,5-7' -> [0, 2, 5, 6, 7] (negative numbers count from the end); the range against the model's depth is
    checked where the model is known (`extract.parse_layers`)."""
    picked: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = _LAYER_PART.fullmatch(part)
        if not m:
            raise SnError(f"--layers: cannot read {part!r} (use e.g. 0,2,5-7)")
        lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
        if hi < lo:
            raise SnError(f"--layers: the range {part!r} runs backwards (write {hi}-{lo})")
        picked += list(range(lo, hi + 1))
    if not picked:
        raise SnError(f"--layers: {text!r} names no layer (use e.g. 0,2,5-7)")
    return picked


def layers(text: str) -> str:
    """`layer_list` as a check: the text unchanged when it reads."""
    if text != "all":
        layer_list(text)
    return text


def site_list(text: str) -> list[str]:
    """'resid,mlp' -> ['resid', 'mlp']."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in SITES]
    if bad or not names:
        raise SnError(f"--sites: {', '.join(bad) or repr(text)} not a site (use some of {', '.join(SITES)})")
    return names


def sites(text: str) -> str:
    site_list(text)
    return text


def model_dtype(name: str) -> str:
    if name not in MODEL_DTYPES:
        raise SnError(f"--model-dtype {name!r}: use one of {', '.join(MODEL_DTYPES)}")
    return name


def _cuda_ok(index: int | None) -> str | None:
    import torch

    if not torch.cuda.is_available():
        return f"CUDA is not available here (torch {torch.__version__}); use --device cpu"
    if index is not None and index >= torch.cuda.device_count():
        return f"this machine has {torch.cuda.device_count()} CUDA device(s)"
    return None


def _mps_ok(index: int | None) -> str | None:
    import torch

    return None if torch.backends.mps.is_available() else "MPS is not available here; use --device cpu"


# Device type -> why it cannot be used here (None: it can).
_DEVICES = {"cpu": lambda index: None, "cuda": _cuda_ok, "mps": _mps_ok}


def device(name: str) -> str:
    """A torch device this machine has (cpu, cuda, cuda:N, mps)."""
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise SnError(f"--device {name!r}: not a device (use {', '.join(_DEVICES)} or cuda:N)") from None
    if dev.type not in _DEVICES:
        raise SnError(f"--device {name!r}: unsupported (use {', '.join(_DEVICES)} or cuda:N)")
    why = _DEVICES[dev.type](dev.index)
    if why:
        raise SnError(f"--device {name!r}: {why}")
    return name


def cron(expr: str) -> str:
    """A cron expression Prefect accepts (Prefect's own check, so the two never disagree)."""
    from prefect._internal.schemas.validators import validate_cron_string

    try:
        return validate_cron_string(expr)
    except ValueError as exc:
        raise SnError(f"--cron {expr!r}: {exc} (five fields, e.g. '0 3 * * *')") from None


def prefect_api(url: str) -> str:
    """A Prefect server answers at `url` (its /health endpoint), so flows do not fail after minutes of retries."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=5) as response:
            response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SnError(f"PREFECT_API_URL={url}: no Prefect server answers there ({reason}); start one "
                      "(infra/stack.sh start) or unset PREFECT_API_URL") from None
    return url
