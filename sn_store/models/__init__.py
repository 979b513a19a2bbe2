"""Model family adapters, a registry keyed by the HF `model_type`, and model loading by name, path or hub id."""

from . import gemma3, idefics3, llava, llava_next, qwen2_vl  # noqa: F401  (registers the families)
from .base import SITES, Adapter, adapter_class, registered
from .loading import config_hash, load_model, resolve_model

__all__ = ["SITES", "Adapter", "adapter_class", "config_hash", "load_model", "registered", "resolve_model"]
