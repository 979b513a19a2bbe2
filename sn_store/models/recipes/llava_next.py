"""Tiny-model recipe for `llava_next` (LLaVA-1.6): CLIP tower on a grid of crops chosen by aspect ratio ("anyres"),
MLP projector, Mistral decoder: images of other shapes give other numbers of image tokens."""

from __future__ import annotations

from ..tiny import TinyDims, text_dims, vision_dims

SPECIAL_TOKENS = ["<s>", "</s>", "<unk>", "<image>"]
# The template of llava-hf/llava-v1.6-mistral-7b-hf.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ '<<SYS>>\n' + message['content'][0]['text'] + '\n<</SYS>>\n\n' }}{% elif message['role'] == 'user' %}"
    "{{ '[INST] ' }}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] }}{% endfor %}{{' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'][0]['text'] + '</s> '}}{% endif %}{% endfor %}"
)


def grid(dims: TinyDims) -> list[list[int]]:
    side = dims.image_size
    return [[side, 2 * side], [2 * side, side]]


def config(tokenizer, dims: TinyDims):
    from transformers import CLIPVisionConfig, LlavaNextConfig, MistralConfig

    return LlavaNextConfig(
        vision_config=CLIPVisionConfig(**vision_dims(dims), projection_dim=dims.vision_hidden),
        text_config=MistralConfig(**text_dims(tokenizer, dims)), image_grid_pinpoints=grid(dims),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-2,
        vision_feature_select_strategy="default", projector_hidden_act="gelu", tie_word_embeddings=False,
    )


def processor(tokenizer, dims: TinyDims):
    from transformers import LlavaNextImageProcessorPil, LlavaNextProcessor

    side = dims.image_size
    images = LlavaNextImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                                        image_grid_pinpoints=grid(dims))
    return LlavaNextProcessor(
        image_processor=images, tokenizer=tokenizer, patch_size=dims.patch_size,
        vision_feature_select_strategy="default", num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE,
    )
