"""Tiny-model recipe for `paligemma` (PaliGemma 2): SigLIP tower, linear projector, Gemma 2 decoder; a prefix LM
(full attention over image and prompt) with no chat template: the prompt is the plain question."""

from __future__ import annotations

from ..tiny import TinyDims, text_dims, vision_dims

SPECIAL_TOKENS = ["<bos>", "<eos>", "<pad>", "<image>"]
NAMED_TOKENS = {"image_token": "<image>"}
CHAT_TEMPLATE = None  # PaliGemma checkpoints ship none


def config(tokenizer, dims: TinyDims):
    from transformers import Gemma2Config, PaliGemmaConfig, SiglipVisionConfig

    text = dict(text_dims(tokenizer, dims), head_dim=dims.hidden // dims.heads, sliding_window=16,
                query_pre_attn_scalar=dims.hidden // dims.heads)
    return PaliGemmaConfig(
        vision_config=SiglipVisionConfig(**vision_dims(dims), projection_dim=dims.hidden),
        text_config=Gemma2Config(**text), image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        projection_dim=dims.hidden, tie_word_embeddings=False,
    )


def processor(tokenizer, dims: TinyDims):
    from transformers import PaliGemmaProcessor, SiglipImageProcessorPil

    side = dims.image_size
    images = SiglipImageProcessorPil(size={"height": side, "width": side})
    images.image_seq_length = (side // dims.patch_size) ** 2
    return PaliGemmaProcessor(image_processor=images, tokenizer=tokenizer)
