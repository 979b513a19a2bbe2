"""Tiny-model recipe for `qwen2_5_vl`: windowed-attention ViT with 2x2 patch merging, Qwen2 decoder with mRoPE."""

from __future__ import annotations

from ..base import image_only
from ..tiny import TinyDims, mrope_section, text_dims
from .qwen2_vl import CHAT_TEMPLATE, SPECIAL_TOKENS, qwen_image_options

# Qwen2.5-VL-7B-Instruct has Qwen2-VL's special tokens and chat template.
__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "config", "processor"]


def config(tokenizer, dims: TinyDims):
    from transformers import Qwen2_5_VLConfig

    text = text_dims(tokenizer, dims)
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section(text)}
    vision = dict(
        depth=dims.vision_layers, hidden_size=dims.vision_hidden, intermediate_size=2 * dims.vision_hidden,
        out_hidden_size=dims.hidden, num_heads=dims.vision_heads, patch_size=dims.patch_size,
        spatial_merge_size=2, temporal_patch_size=2, window_size=4 * dims.patch_size, fullatt_block_indexes=[1],
    )
    ids = tokenizer.convert_tokens_to_ids
    return Qwen2_5_VLConfig(
        text_config=text, vision_config=vision, image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"), tie_word_embeddings=False,
    )


def processor(tokenizer, dims: TinyDims):
    from transformers import Qwen2VLImageProcessorPil

    images = Qwen2VLImageProcessorPil(**qwen_image_options(dims))
    return image_only("Qwen2_5_VLProcessor")(images, tokenizer, chat_template=CHAT_TEMPLATE)
