"""LLaVA-NeXT (1.6) and LLaVA-OneVision: a vision tower on "anyres" crops, MLP projector, Mistral/Vicuna or Qwen2
decoder. The number of image tokens depends on the image's size and shape."""

from __future__ import annotations

from .base import Adapter, register


@register
class LlavaNextAdapter(Adapter):
    model_type = "llava_next"
    checkpoints = ("llava-hf/llava-v1.6-mistral-7b-hf", "llava-hf/llava-v1.6-vicuna-7b-hf")


@register
class LlavaOnevisionAdapter(Adapter):
    model_type = "llava_onevision"
    checkpoints = ("llava-hf/llava-onevision-qwen2-0.5b-ov-hf", "llava-hf/llava-onevision-qwen2-7b-ov-hf")
    image_only_processor = "LlavaOnevisionProcessor"
