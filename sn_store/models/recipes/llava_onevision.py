"""Tiny-model recipe for `llava_onevision`: SigLIP tower on "anyres" crops, MLP projector, Qwen2 decoder."""

from __future__ import annotations

from ..base import image_only
from ..tiny import TinyDims, text_dims, vision_dims
from .llava_next import grid

SPECIAL_TOKENS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<image>", "<video>"]
# The template of llava-hf/llava-onevision-qwen2-7b-ov-hf.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + content['text'] }}"
    "{% endfor %}{{'<|im_end|>\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def config(tokenizer, dims: TinyDims):
    from transformers import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig

    ids = tokenizer.convert_tokens_to_ids
    return LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(**vision_dims(dims)), text_config=Qwen2Config(**text_dims(tokenizer, dims)),
        image_grid_pinpoints=grid(dims), image_token_id=ids("<image>"), video_token_id=ids("<video>"),
        vision_feature_layer=-1, vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9",
        tie_word_embeddings=False,
    )


def processor(tokenizer, dims: TinyDims):
    from transformers import LlavaOnevisionImageProcessorPil

    side = dims.image_size
    images = LlavaOnevisionImageProcessorPil(size={"height": side, "width": side}, image_grid_pinpoints=grid(dims))
    return image_only("LlavaOnevisionProcessor")(
        images, tokenizer, chat_template=CHAT_TEMPLATE, num_image_tokens=(side // dims.patch_size) ** 2,
        vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9",
    )
