"""Gemma 3 (4B and up): SigLIP tower pooled to 256 soft tokens per image, Gemma 3 decoder."""

from __future__ import annotations

from .base import Adapter, register


@register
class Gemma3Adapter(Adapter):
    model_type = "gemma3"
    checkpoints = ("google/gemma-3-4b-it", "google/gemma-3-12b-it")
