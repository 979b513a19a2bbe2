"""Tiny-model recipe for `internvl` (InternVL3, HF format): InternViT tower, pixel-shuffle MLP projector, Qwen2
decoder."""

from __future__ import annotations

from ..base import image_only
from ..tiny import TinyDims, text_dims

SPECIAL_TOKENS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
NAMED_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
                "video_token": "<video>"}
# The template of OpenGVLab/InternVL3-1B-hf, without its video branch.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "{{ '<IMG_CONTEXT>\n' }}{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}"
    "{% endif %}{{'<|im_end|>\n'}}{% endfor %}{% if add_generation_prompt %}{{'<|im_start|>assistant\n' }}{% endif %}"
)


def seq_length(dims: TinyDims) -> int:
    return (dims.image_size // dims.patch_size) ** 2 // 4  # pixel shuffle at downsample ratio 0.5


def config(tokenizer, dims: TinyDims):
    from transformers import InternVLConfig

    side, patch = dims.image_size, dims.patch_size
    vision = dict(hidden_size=dims.vision_hidden, intermediate_size=2 * dims.vision_hidden,
                  num_hidden_layers=dims.vision_layers, num_attention_heads=dims.vision_heads,
                  image_size=[side, side], patch_size=[patch, patch])
    return InternVLConfig(
        vision_config=vision, text_config=dict(text_dims(tokenizer, dims), model_type="qwen2"),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=seq_length(dims),
        downsample_ratio=0.5, tie_word_embeddings=False,
    )


def processor(tokenizer, dims: TinyDims):
    from transformers import GotOcr2ImageProcessorPil

    side = dims.image_size
    images = GotOcr2ImageProcessorPil(size={"height": side, "width": side}, crop_to_patches=True, min_patches=1,
                                      max_patches=2)
    return image_only("InternVLProcessor")(images, tokenizer, chat_template=CHAT_TEMPLATE,
                                           image_seq_length=seq_length(dims))
