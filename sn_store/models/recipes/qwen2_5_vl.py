"""Tiny-model recipe for `qwen2_5_vl`: windowed-attention ViT with 2x2 patch merging, Qwen2 decoder with mRoPE."""

from __future__ import annotations

from ..base import image_only
from ..tiny import TinyDims, mrope_section, text_dims
from .qwen2_vl import SPECIAL_TOKENS, qwen_image_options

SPECIAL_TOKENS = SPECIAL_TOKENS  # the Qwen2-VL vocabulary's specials
# The template of Qwen/Qwen2.5-VL-7B-Instruct, without its video branch.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


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
