"""What every model family adapter knows: where the decoder layers and the three sites are, how to build batched
inputs, and which token answers each class. Families differ only in the few class attributes and hooks below."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from PIL import Image

from ..errors import SnError

SITES = ("resid", "mlp", "attn")
SITE_ORDER = {"attn": 0, "mlp": 1, "resid": 2}  # when each site is computed inside a decoder layer


def execution_order(layer_site: tuple[int, str]) -> tuple[int, int]:
    """Sort key of a (layer, site) pair: the order in which a forward pass reaches it."""
    return layer_site[0], SITE_ORDER[layer_site[1]]


class StopForward(Exception):
    """Raised by a site hook when nothing after it is needed: `Adapter.forward` ends the pass there."""

_REGISTRY: dict[str, type[Adapter]] = {}


def register(cls: type[Adapter]) -> type[Adapter]:
    """Class decorator: make a family adapter available under its HF `model_type`."""
    _REGISTRY[cls.model_type] = cls
    return cls


def adapter_class(model_type: str) -> type[Adapter]:
    try:
        return _REGISTRY[model_type]
    except KeyError:
        raise SnError(
            f"unknown model type {model_type!r}: registered families are {sorted(_REGISTRY)}"
        ) from None


def registered() -> dict[str, type[Adapter]]:
    return dict(_REGISTRY)


@dataclass(frozen=True)
class Site:
    """Where one site lives in a decoder layer: a submodule and whether we read its input or its output."""

    path: str  # dotted path inside the decoder layer ("" = the layer itself)
    read: str  # "input" or "output"


class Adapter:
    """Binds a loaded HF image-text-to-text model and its processor to the sn_store conventions."""

    model_type: ClassVar[str]
    tiny_name: ClassVar[str]
    sites: ClassVar[dict[str, Site]] = {
        "resid": Site("", "output"),
        "mlp": Site("mlp.down_proj", "input"),
        "attn": Site("self_attn.o_proj", "input"),
    }

    def __init__(self, model: torch.nn.Module, processor: Any, source: str = ""):
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"
        self.source = source

    # --- structure -------------------------------------------------------------------------------------------
    @property
    def decoder(self) -> torch.nn.Module:
        return self.model.model.get_decoder()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def layers(self) -> torch.nn.ModuleList:
        return self.decoder.layers

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def site_module(self, layer: int, site: str) -> torch.nn.Module:
        return self.layers[layer].get_submodule(self.sites[site].path)

    def hook_site(self, layer: int, site: str, fn) -> torch.utils.hooks.RemovableHandle:
        """Call `fn(x)` with the site's (batch, seq, width) tensor on every forward pass."""
        module = self.site_module(layer, site)
        if self.sites[site].read == "output":
            return module.register_forward_hook(lambda m, args, out: fn(out[0] if isinstance(out, tuple) else out))
        return module.register_forward_pre_hook(lambda m, args: fn(args[0]))

    def forward(self, inputs: dict[str, torch.Tensor], **kwargs):
        """The model's output, or None when a site hook raised `StopForward`."""
        try:
            return self.model(**inputs, use_cache=False, **kwargs)
        except StopForward:
            return None

    def site_width(self, site: str) -> int:
        if site == "resid":
            return self.model.config.get_text_config().hidden_size
        return self.site_module(0, site).in_features

    # --- inputs ----------------------------------------------------------------------------------------------
    def prompt(self, question: str) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def images_arg(self, images: list[Image.Image]) -> list:
        """How this family's processor wants a batch of one image per sample."""
        return images

    def build_inputs(self, images: list[Image.Image], questions: list[str]) -> dict[str, torch.Tensor]:
        """Batched, left-padded model inputs for one image and one question per sample."""
        prompts = [self.prompt(q) for q in questions]
        batch = self.processor(
            images=self.images_arg(images), text=prompts, padding=True, return_tensors="pt", **self.processor_kwargs()
        )
        return dict(batch)

    def to_device(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Inputs on the model's device, floating-point ones (pixels) in the model's dtype."""
        device, dtype = self.device, self.model.dtype
        return {k: v.to(device, dtype=dtype if v.is_floating_point() else None) for k, v in inputs.items()}

    def processor_kwargs(self) -> dict[str, Any]:
        return {}

    def verbalizer_ids(self, verbalizers: list[str]) -> list[int]:
        """First token of each class's verbalizer as the model would emit it after the generation prompt."""
        ids = []
        for word in verbalizers:
            toks = self.tokenizer.encode(word, add_special_tokens=False)
            if not toks:
                raise SnError(f"verbalizer {word!r} encodes to no token")
            ids.append(toks[0])
        return ids

    @classmethod
    def load_processor(cls, path: str):
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(path, trust_remote_code=False)  # never run code that came with files

    # --- tiny models -----------------------------------------------------------------------------------------
    special_tokens: ClassVar[list[str]]
    chat_template: ClassVar[str]

    @classmethod
    def tiny_config(cls, tokenizer, seed: int):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def tiny_processor(cls, tokenizer):  # pragma: no cover - abstract
        raise NotImplementedError
