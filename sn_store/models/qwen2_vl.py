"""Qwen2-VL: native-resolution ViT with 2x2 patch merging, Qwen2 decoder with multimodal RoPE."""

from __future__ import annotations

import functools

from .base import Adapter, register
from .tiny import TinyDims, text_dims


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
    tiny_name = "tiny-qwen2-vl"
    special_tokens = [
        "<|endoftext|>", "<|im_end|>", "<|pad|>", "<|im_start|>",
        "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
    ]
    # The template of Qwen/Qwen2-VL-2B-Instruct, without the video and system branches we never render.
    chat_template = (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% for content in message['content'] %}"
        "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
        "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )

    def processor_kwargs(self):
        # Qwen's mRoPE needs to know which tokens are image tokens.
        return {"return_mm_token_type_ids": True}

    @classmethod
    def load_processor(cls, path):
        from transformers import AutoImageProcessor, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        images = AutoImageProcessor.from_pretrained(path, trust_remote_code=False)
        return image_only_processor_class()(images, tokenizer, chat_template=tokenizer.chat_template)

    @classmethod
    def tiny_config(cls, tokenizer, dims: TinyDims):
        from transformers import Qwen2VLConfig

        text = text_dims(tokenizer, dims)
        half = (text["hidden_size"] // text["num_attention_heads"]) // 2
        section = [half - 2 * (half // 3), half // 3, half // 3]
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section}
        vision = dict(
            depth=dims.vision_layers, embed_dim=dims.vision_hidden, hidden_size=dims.hidden,
            num_heads=dims.vision_heads, patch_size=dims.patch_size, spatial_merge_size=2, temporal_patch_size=2,
        )
        ids = tokenizer.convert_tokens_to_ids
        return Qwen2VLConfig(
            text_config=text, vision_config=vision, image_token_id=ids("<|image_pad|>"),
            video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"),
            vision_end_token_id=ids("<|vision_end|>"), tie_word_embeddings=False,
        )

    @classmethod
    def tiny_processor(cls, tokenizer, dims: TinyDims):
        from transformers import Qwen2VLImageProcessorPil

        pixels = dims.image_size * dims.image_size
        images = Qwen2VLImageProcessorPil(
            patch_size=dims.patch_size, merge_size=2, temporal_patch_size=2,
            size={"shortest_edge": pixels, "longest_edge": pixels},
        )
        return image_only_processor_class()(images, tokenizer, chat_template=cls.chat_template)
