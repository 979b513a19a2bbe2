"""Tiny-model recipe for `llava`: LLaVA-1.5: CLIP tower, MLP projector, Llama decoder."""

from __future__ import annotations

from ..tiny import TinyDims, text_dims

SPECIAL_TOKENS = ["<s>", "</s>", "<pad>", "<image>"]
# The template of llava-hf/llava-1.5-7b-hf.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
    "{% endif %}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def config(tokenizer, dims: TinyDims):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(
        hidden_size=dims.vision_hidden, intermediate_size=2 * dims.vision_hidden,
        num_hidden_layers=dims.vision_layers, num_attention_heads=dims.vision_heads,
        image_size=dims.image_size, patch_size=dims.patch_size, projection_dim=dims.vision_hidden,
    )
    text = LlamaConfig(**text_dims(tokenizer, dims))
    return LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2, vision_feature_select_strategy="default", projector_hidden_act="gelu",
        tie_word_embeddings=False,
    )


def processor(tokenizer, dims: TinyDims):
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    side = dims.image_size
    images = CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    return LlavaProcessor(
        image_processor=images, tokenizer=tokenizer, patch_size=dims.patch_size,
        vision_feature_select_strategy="default", num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE,
    )
