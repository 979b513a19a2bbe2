"""Tiny-model recipe for `qwen2_vl`: native-resolution ViT with 2x2 patch merging, Qwen2 decoder with mRoPE."""

from __future__ import annotations

from ..base import image_only
from ..tiny import TinyDims, mrope_section, text_dims

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_end|>", "<|pad|>", "<|im_start|>",
    "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
]
# The template of Qwen/Qwen2-VL-2B-Instruct (and of Qwen2.5-VL), without its video branch.
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
    from transformers import Qwen2VLConfig

    text = text_dims(tokenizer, dims)
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section(text)}
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


def qwen_image_options(dims: TinyDims) -> dict:
    """Native resolution up to a few merged patches: images of other sizes give other numbers of image tokens."""
    unit = dims.patch_size * 2  # one merged 2x2 patch
    return dict(patch_size=dims.patch_size, merge_size=2, temporal_patch_size=2,
                size={"shortest_edge": unit * unit, "longest_edge": 4 * dims.image_size * dims.image_size})


def processor(tokenizer, dims: TinyDims):
    from transformers import Qwen2VLImageProcessorPil

    images = Qwen2VLImageProcessorPil(**qwen_image_options(dims))
    return image_only("Qwen2VLProcessor")(images, tokenizer, chat_template=CHAT_TEMPLATE)
