"""LLaVA-1.5 as published in HF format (`llava-hf/llava-1.5-7b-hf`): CLIP tower, MLP projector, Llama decoder."""

from __future__ import annotations

from .base import Adapter, register


@register
class LlavaAdapter(Adapter):
    model_type = "llava"
    checkpoints = ("llava-hf/llava-1.5-7b-hf", "llava-hf/llava-1.5-13b-hf")
