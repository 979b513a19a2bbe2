"""Llama 3.2 Vision (mllama): a tiled ViT read by cross-attention layers interleaved with the Llama decoder's
self-attention layers. In a cross-attention layer the `attn` site is the cross-attention's output projection."""

from __future__ import annotations

from .base import Adapter, register


@register
class MllamaAdapter(Adapter):
    model_type = "mllama"
    checkpoints = ("meta-llama/Llama-3.2-11B-Vision-Instruct",)

    @property
    def cross_attention_layers(self) -> list[int]:
        return list(self.model.config.get_text_config().cross_attention_layers)

    def site_path(self, layer: int, site: str) -> str:
        if site == "attn" and layer in self.cross_attention_layers:
            return "cross_attn.o_proj"
        return super().site_path(layer, site)

    @classmethod
    def trimmed_config(cls, config, exit_layer: int):
        config = super().trimmed_config(config, exit_layer)
        text = config.get_text_config()
        text.cross_attention_layers = [i for i in text.cross_attention_layers if i <= exit_layer]
        return config
