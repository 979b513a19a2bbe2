"""Tiny models of every registered family, built deterministically from a seed and a `transformers` config, with a
locally trained tokenizer, saved as ordinary HF directories: the stand-in for hub models where none can be fetched."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class TinyDims:
    """The geometry of a tiny model. The defaults are small enough for tests; benchmarks pass larger ones."""

    hidden: int = 64
    layers: int = 4
    intermediate: int = 128
    heads: int = 4
    kv_heads: int = 2
    vision_hidden: int = 32
    vision_layers: int = 2
    vision_heads: int = 2
    image_size: int = 32
    patch_size: int = 8
    vision_intermediate: int | None = None  # default: twice vision_hidden
    vocab: int = 0  # at least this many token embeddings (the real model's vocabulary size, for its weight size)
    head_dim: int | None = None  # default: hidden // heads


def text_dims(tokenizer, dims: TinyDims) -> dict:
    """Decoder config keys shared by the Llama and Qwen2 text models."""
    return dict(
        vocab_size=max(len(tokenizer), dims.vocab), hidden_size=dims.hidden, intermediate_size=dims.intermediate,
        num_hidden_layers=dims.layers, num_attention_heads=dims.heads, num_key_value_heads=dims.kv_heads,
        max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def vision_dims(dims: TinyDims) -> dict:
    """Vision-tower config keys shared by the CLIP and SigLIP towers."""
    return dict(
        hidden_size=dims.vision_hidden, intermediate_size=vision_intermediate(dims),
        num_hidden_layers=dims.vision_layers, num_attention_heads=dims.vision_heads, image_size=dims.image_size,
        patch_size=dims.patch_size,
    )


def vision_intermediate(dims: TinyDims) -> int:
    return dims.vision_intermediate or 2 * dims.vision_hidden


def head_dim(dims: TinyDims) -> int:
    return dims.head_dim or dims.hidden // dims.heads


def mrope_section(text: dict) -> list[int]:
    """Qwen's multimodal RoPE split of half a head's rotary dimensions over (time, height, width)."""
    half = (text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"]) // 2
    return [half - 2 * (half // 3), half // 3, half // 3]


def build_tiny(model_type: str, out_dir: str | Path, seed: int = 0, dims: TinyDims = TinyDims(),
               dtype: torch.dtype = torch.float32) -> Path:
    """Build a random-weight model of family `model_type`, save it with its processor to `out_dir`."""
    from transformers import AutoModelForImageTextToText
    from transformers.utils import logging as hf_logging

    from .base import adapter_class
    from .recipes import recipe
    from .tokenizer import train_tokenizer

    family, kit = adapter_class(model_type), recipe(model_type)
    tokenizer = train_tokenizer(kit.SPECIAL_TOKENS, kit.CHAT_TEMPLATE, getattr(kit, "NAMED_TOKENS", {}))
    config = kit.config(tokenizer, dims)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    out = Path(out_dir)
    hf_logging.disable_progress_bar()
    model.save_pretrained(out)
    kit.processor(tokenizer, dims).save_pretrained(out)
    (out / "README.md").write_text(
        f"# {family.tiny_name}\n\nRandom weights (seed {seed}), built by `sn_store.models.tiny.build_tiny` "
        f"from a `{type(config).__name__}` with {asdict(dims)}.\n"
    )
    return out
