"""Qwen2-VL: native-resolution ViT with 2x2 patch merging, Qwen2 decoder with multimodal RoPE."""

from __future__ import annotations

import functools

from .base import Adapter, register


@functools.cache
def image_only_processor_class():
    """HF's Qwen2-VL processor without its video processor, which needs torchvision: we only ever feed images.
    Built on first use so that importing sn_store does not import every transformers processor."""
    from transformers import ProcessorMixin, Qwen2VLProcessor

    class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token, self.video_token = "<|image_pad|>", "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return ImageOnlyQwen2VLProcessor


@register
class Qwen2VLAdapter(Adapter):
    model_type = "qwen2_vl"
    checkpoints = ("Qwen/Qwen2-VL-2B-Instruct", "Qwen/Qwen2-VL-7B-Instruct")

    def processor_kwargs(self):
        # Qwen's mRoPE needs to know which tokens are image tokens.
        return {"return_mm_token_type_ids": True}

    @classmethod
    def load_processor(cls, path):
        from transformers import AutoImageProcessor, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        images = AutoImageProcessor.from_pretrained(path, trust_remote_code=False)
        return image_only_processor_class()(images, tokenizer, chat_template=tokenizer.chat_template)
