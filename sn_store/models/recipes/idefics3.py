"""Tiny-model recipe for `idefics3`: SigLIP tower, pixel-shuffle connector, Llama decoder."""

from __future__ import annotations

from ..tiny import TinyDims, text_dims

SPECIAL_TOKENS = [
    "<|im_start|>", "<end_of_utterance>", "<|endoftext|>", "<image>", "<fake_token_around_image>", "<global-img>",
]
# The template of HuggingFaceTB/SmolVLM-Instruct.
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def config(tokenizer, dims: TinyDims):
    from transformers import Idefics3Config

    vision = dict(
        hidden_size=dims.vision_hidden, intermediate_size=2 * dims.vision_hidden,
        num_hidden_layers=dims.vision_layers, num_attention_heads=dims.vision_heads,
        image_size=dims.image_size, patch_size=dims.patch_size,
    )
    text = dict(text_dims(tokenizer, dims), model_type="llama")
    return Idefics3Config(
        vision_config=vision, text_config=text, scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), tie_word_embeddings=False,
    )


def processor(tokenizer, dims: TinyDims):
    from transformers import Idefics3ImageProcessorPil, Idefics3Processor

    side = dims.image_size
    images = Idefics3ImageProcessorPil(
        do_image_splitting=False, size={"longest_edge": side}, max_image_size={"longest_edge": side},
    )
    seq = (side // dims.patch_size) ** 2 // 4
    return Idefics3Processor(
        image_processor=images, tokenizer=tokenizer, image_seq_len=seq, chat_template=CHAT_TEMPLATE
    )
