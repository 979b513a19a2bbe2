"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL: native-resolution ViT with 2x2 patch merging, a Qwen decoder with
multimodal RoPE (mRoPE), which needs to know which tokens are image tokens."""

from __future__ import annotations

from .base import Adapter, register


class QwenVLAdapter(Adapter):
    def processor_kwargs(self):
        return {"return_mm_token_type_ids": True}  # mRoPE positions of the image tokens


@register
class Qwen2VLAdapter(QwenVLAdapter):
    model_type = "qwen2_vl"
    checkpoints = ("Qwen/Qwen2-VL-2B-Instruct", "Qwen/Qwen2-VL-7B-Instruct")
    image_only_processor = "Qwen2VLProcessor"


@register
class Qwen25VLAdapter(QwenVLAdapter):
    model_type = "qwen2_5_vl"
    checkpoints = ("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct")
    image_only_processor = "Qwen2_5_VLProcessor"


@register
class Qwen3VLAdapter(QwenVLAdapter):
    model_type = "qwen3_vl"
    checkpoints = ("Qwen/Qwen3-VL-2B-Instruct", "Qwen/Qwen3-VL-8B-Instruct")
    image_only_processor = "Qwen3VLProcessor"
