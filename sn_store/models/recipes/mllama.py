"""Tiny-model recipe for `mllama` (Llama 3.2 Vision): tiled ViT with global layers, cross-attention layers in a
Llama decoder."""

from __future__ import annotations

from ..tiny import TinyDims, text_dims

SPECIAL_TOKENS = ["<|begin_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>", "<|start_header_id|>",
                  "<|end_header_id|>", "<|image|>", "<|python_tag|>"]
# The template of meta-llama/Llama-3.2-11B-Vision-Instruct, without its tool and date branches.
CHAT_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}{%- if message['content'] is string %}"
    "{{- message['content'] }}{%- else %}{%- for content in message['content'] %}{%- if content['type'] == 'image' %}"
    "{{- '<|image|>' }}{%- elif content['type'] == 'text' %}{{- content['text'] }}{%- endif %}{%- endfor %}"
    "{%- endif %}{{- '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}"
)
TILES = 2


def config(tokenizer, dims: TinyDims):
    from transformers import MllamaConfig

    vision = dict(hidden_size=dims.vision_hidden, intermediate_size=2 * dims.vision_hidden,
                  num_hidden_layers=dims.vision_layers, num_global_layers=1, attention_heads=dims.vision_heads,
                  intermediate_layers_indices=[0], vision_output_dim=2 * dims.vision_hidden,
                  image_size=dims.image_size, patch_size=dims.patch_size, max_num_tiles=TILES,
                  supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]])
    text = dict(text_dims(tokenizer, dims), cross_attention_layers=[1, dims.layers - 1])
    return MllamaConfig(vision_config=vision, text_config=text,
                        image_token_index=tokenizer.convert_tokens_to_ids("<|image|>"), tie_word_embeddings=False)


def processor(tokenizer, dims: TinyDims):
    from transformers import MllamaImageProcessorPil, MllamaProcessor

    side = dims.image_size
    images = MllamaImageProcessorPil(size={"height": side, "width": side}, max_image_tiles=TILES)
    return MllamaProcessor(image_processor=images, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
