"""Idefics3 / SmolVLM: SigLIP tower, pixel-shuffle connector, Llama decoder."""

from __future__ import annotations

from .base import Adapter, register


@register
class Idefics3Adapter(Adapter):
    model_type = "idefics3"
    checkpoints = ("HuggingFaceTB/SmolVLM-Instruct", "HuggingFaceM4/Idefics3-8B-Llama3")


@register
class SmolVLMAdapter(Idefics3Adapter):
    """SmolVLM2: Idefics3's layout under its own model type; its processor also handles video (torchvision)."""

    model_type = "smolvlm"
    checkpoints = ("HuggingFaceTB/SmolVLM2-2.2B-Instruct", "HuggingFaceTB/SmolVLM2-500M-Video-Instruct")
    image_only_processor = "SmolVLMProcessor"
