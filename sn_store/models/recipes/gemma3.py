"""Tiny-model recipe for `gemma3`: SigLIP tower pooled to a fixed number of soft tokens, Gemma 3 decoder
(interleaved sliding-window attention, bidirectional attention over an image's tokens)."""

from __future__ import annotations

from ..tiny import TinyDims, text_dims, vision_dims

SPECIAL_TOKENS = ["<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
                  "<end_of_image>", "<image_soft_token>"]
NAMED_TOKENS = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
# The template of google/gemma-3-4b-it.
CHAT_TEMPLATE = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- if messages[0]['content'] is string -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- else -%}"
    "{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = \"\" -%}"
    "{%- set loop_messages = messages -%}{%- endif -%}{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'assistant') -%}{%- set role = \"model\" -%}{%- else -%}"
    "{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- elif message['content'] is iterable -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}{%- elif item['type'] == 'text' -%}"
    "{{ item['text'] | trim }}{%- endif -%}{%- endfor -%}{%- endif -%}{{ '<end_of_turn>\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{'<start_of_turn>model\n'}}{%- endif -%}"
)
SOFT_TOKENS = 4  # image tokens per image after pooling (256 in the real models)


def config(tokenizer, dims: TinyDims):
    from transformers import Gemma3Config, Gemma3TextConfig, SiglipVisionConfig

    text = dict(text_dims(tokenizer, dims), head_dim=dims.hidden // dims.heads, sliding_window=16,
                query_pre_attn_scalar=dims.hidden // dims.heads)
    ids = tokenizer.convert_tokens_to_ids
    return Gemma3Config(
        text_config=Gemma3TextConfig(**text), vision_config=SiglipVisionConfig(**vision_dims(dims)),
        mm_tokens_per_image=SOFT_TOKENS, boi_token_index=ids("<start_of_image>"), eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"), tie_word_embeddings=False,
    )


def processor(tokenizer, dims: TinyDims):
    from transformers import Gemma3ImageProcessorPil, Gemma3Processor

    side = dims.image_size
    images = Gemma3ImageProcessorPil(size={"height": side, "width": side}, do_pan_and_scan=False)
    return Gemma3Processor(image_processor=images, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE,
                           image_seq_length=SOFT_TOKENS)
