"""Model family adapters, a registry keyed by the HF `model_type`, and model loading by name, path or hub id."""

from . import gemma3, idefics3, internvl, llava, llava_next, mllama, paligemma, qwen2_vl  # noqa: F401  (registers them)
from .base import SITES, Adapter, adapter_class, registered
from .loading import config_hash, load_model, resolve_model

__all__ = ["SITES", "Adapter", "adapter_class", "config_hash", "load_model", "registered", "resolve_model"]
