"""How each family's built-in tiny model is made, one module per HF `model_type`, kept apart from the runtime
adapters (sn_store.models.<family>) so that loading a real checkpoint never imports them.

A recipe module defines `SPECIAL_TOKENS` (bos, eos, pad first), `CHAT_TEMPLATE` (its reference checkpoint's),
`config(tokenizer, dims)` (the family's real `transformers` config class) and `processor(tokenizer, dims)` (its
real processor and image-processor classes)."""

from __future__ import annotations

import importlib
from types import ModuleType

from ...errors import SnError


def recipe(model_type: str) -> ModuleType:
    name = f"{__name__}.{model_type}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise SnError(f"model type {model_type!r} has no built-in tiny model") from None
