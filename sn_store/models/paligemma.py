"""PaliGemma and PaliGemma 2: SigLIP tower, linear projector, Gemma decoder; no chat template, one image."""

from __future__ import annotations

from .base import Adapter, register


@register
class PaliGemmaAdapter(Adapter):
    model_type = "paligemma"
    checkpoints = ("google/paligemma2-3b-mix-224", "google/paligemma-3b-mix-224")
    multi_image = False

    def prompt(self, question: str, n_images: int = 1) -> str:
        return "<image>" * n_images + question  # the processor expands the image tokens, adds <bos> and a newline

    def build_inputs(self, images, questions):
        inputs = super().build_inputs(images, questions)
        inputs.pop("labels", None)  # the processor's training targets: not a model input here
        return inputs
