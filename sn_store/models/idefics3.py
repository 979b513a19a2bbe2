"""Idefics3 / SmolVLM: SigLIP tower, pixel-shuffle connector, Llama decoder."""

from __future__ import annotations

from .base import Adapter, register


@register
class Idefics3Adapter(Adapter):
    model_type = "idefics3"
    checkpoints = ("HuggingFaceTB/SmolVLM-Instruct", "HuggingFaceM4/Idefics3-8B-Llama3")

    def images_arg(self, images):
        return [[im] for im in images]  # Idefics3 takes a list of images per sample
