"""Tiny-model recipe for `smolvlm` (SmolVLM2): SigLIP tower, pixel-shuffle connector, Llama decoder."""

from __future__ import annotations

from ..base import image_only
from ..tiny import TinyDims, text_dims, vision_dims

SPECIAL_TOKENS = [
    "<|im_start|>", "<end_of_utterance>", "<|endoftext|>", "<image>", "<fake_token_around_image>", "<global-img>",
    "<video>",
]
# The template of HuggingFaceTB/SmolVLM2-2.2B-Instruct.
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% elif line['type'] == 'video' %}{{ '<video>' }}{% endif %}"
    "{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def config(tokenizer, dims: TinyDims):
    from transformers import SmolVLMConfig

    return SmolVLMConfig(
        vision_config=vision_dims(dims), text_config=dict(text_dims(tokenizer, dims), model_type="llama"),
        scale_factor=2, image_token_id=tokenizer.convert_tokens_to_ids("<image>"), tie_word_embeddings=False,
    )


def processor(tokenizer, dims: TinyDims):
    from transformers import SmolVLMImageProcessorPil

    side = dims.image_size
    images = SmolVLMImageProcessorPil(
        do_image_splitting=False, size={"longest_edge": side}, max_image_size={"longest_edge": side},
    )
    seq = (side // dims.patch_size) ** 2 // 4
    return image_only("SmolVLMProcessor")(images, tokenizer, image_seq_len=seq, chat_template=CHAT_TEMPLATE)
