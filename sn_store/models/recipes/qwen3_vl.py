"""Tiny-model recipe for `qwen3_vl`: ViT with DeepStack features fed into the first decoder layers, Qwen3 decoder
with interleaved mRoPE."""

from __future__ import annotations

from ..base import image_only
from ..tiny import TinyDims, head_dim, mrope_section, text_dims, vision_intermediate
from .qwen2_vl import SPECIAL_TOKENS, qwen_image_options

SPECIAL_TOKENS = SPECIAL_TOKENS  # the Qwen2-VL vocabulary's specials
# The template of Qwen/Qwen3-VL-8B-Instruct, without its tool and video branches.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def deepstack(dims: TinyDims) -> list[int]:
    """Vision layers whose features go into the first decoder layers: three, evenly spread ([8, 17, 26] of 27)."""
    return sorted({max(0, dims.vision_layers * i // 3 - 1) for i in (1, 2, 3)})


def config(tokenizer, dims: TinyDims):
    from transformers import Qwen3VLConfig

    text = text_dims(tokenizer, dims)
    text["head_dim"] = head_dim(dims)
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section(text),
                               "mrope_interleaved": True}
    vision = dict(
        depth=dims.vision_layers, hidden_size=dims.vision_hidden, intermediate_size=vision_intermediate(dims),
        out_hidden_size=dims.hidden, num_heads=dims.vision_heads, patch_size=dims.patch_size,
        spatial_merge_size=2, temporal_patch_size=2,
        num_position_embeddings=(2 * dims.image_size // dims.patch_size) ** 2,  # the largest image's patches
        deepstack_visual_indexes=deepstack(dims),
    )
    ids = tokenizer.convert_tokens_to_ids
    return Qwen3VLConfig(
        text_config=text, vision_config=vision, image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"), tie_word_embeddings=False,
    )


def processor(tokenizer, dims: TinyDims):
    from transformers import Qwen2VLImageProcessorPil

    images = Qwen2VLImageProcessorPil(**qwen_image_options(dims))
    return image_only("Qwen3VLProcessor")(images, tokenizer, chat_template=CHAT_TEMPLATE)
