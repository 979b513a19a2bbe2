"""InternVL 3 in HF format: InternViT tower, pixel-shuffle MLP projector, Qwen2 decoder."""

from __future__ import annotations

from .base import Adapter, register


@register
class InternVLAdapter(Adapter):
    model_type = "internvl"
    checkpoints = ("OpenGVLab/InternVL3-1B-hf", "OpenGVLab/InternVL3-8B-hf")
    image_only_processor = "InternVLProcessor"
