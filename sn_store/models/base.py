"""What every model family adapter knows: where the decoder layers and the three sites are, how to build batched
inputs, and which token answers each class. Families differ only in the few class attributes and hooks below."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from PIL import Image

from ..checks import SITES as SITES  # re-exported: sn_store.models.SITES
from ..errors import SnError

if TYPE_CHECKING:  # torch loads when a model does: `sn models list` and the registry stay light
    import torch


class StopForward(Exception):
    """Raised by a site hook when nothing after it is needed: `Adapter.forward` ends the pass there."""


class ExitPlan(Protocol):
    """What the early-exit surgery needs to know (built by `sn_store.artifact.ExitPlan.of`)."""

    exit_layer: int
    full_last: bool  # a resid neuron in the exit layer needs the whole layer
    mlp_rows: tuple[int, ...]  # otherwise: the mlp neurons of the exit layer (only their input rows are kept)


class Recorder:
    """Forward hooks keeping the last-position vector of each requested (layer, site). With `stop`, the pass ends
    as soon as every one of them has fired, in whatever order the family computes them."""

    def __init__(self, adapter: Adapter, wanted: Iterable[tuple[int, str]], stop: bool):
        self.adapter, self.stop = adapter, stop
        self.wanted = list(dict.fromkeys(wanted))
        self.values: dict[tuple[int, str], torch.Tensor] = {}
        self._handles: list = []

    def attach(self) -> Recorder:
        self._handles = [self.adapter.hook_site(layer, site, self._hook((layer, site))) for layer, site in self.wanted]
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> Recorder:
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()

    def _hook(self, key: tuple[int, str]):
        import torch

        def record(x: torch.Tensor) -> None:
            self.values[key] = x[:, -1].to(torch.float32, copy=True)  # later in-place edits of x cannot reach it
            if self.stop and len(self.values) == len(self.wanted):
                raise StopForward

        return record

    def run(self, inputs: dict[str, torch.Tensor], **kwargs):
        """One forward pass; the model's output (None when stopped early). `values` then holds every site."""
        self.values = {}
        out = self.adapter.forward(inputs, **kwargs)
        missing = [k for k in self.wanted if k not in self.values]
        if missing:
            raise SnError(f"model {self.adapter.source!r}: sites {missing} never ran in the forward pass")
        return out

_REGISTRY: dict[str, type[Adapter]] = {}


def register(cls: type[Adapter]) -> type[Adapter]:
    """Class decorator: make a family adapter available under its HF `model_type`; its built-in tiny model (see
    `sn_store.models.recipes`) is named `tiny-` plus the model type with `_` written `-`."""
    cls.tiny_name = "tiny-" + cls.model_type.replace("_", "-")
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
    tiny_name: ClassVar[str]  # set by `register`
    checkpoints: ClassVar[tuple[str, ...]] = ()  # reference hub ids this family follows
    sites: ClassVar[dict[str, Site]] = {
        "resid": Site("", "output"),
        "mlp": Site("mlp.down_proj", "input"),
        "attn": Site("self_attn.o_proj", "input"),
    }
    mlp_path: ClassVar[str] = "mlp"  # the MLP block of a decoder layer
    mlp_inputs: ClassVar[tuple[str, ...]] = ("gate_proj", "up_proj")  # its projections whose rows are the mlp neurons
    # Norms of a decoder layer that run after each site (dropped by `trim` where the layer has them): Llama's
    # pre-MLP norm follows the attention output; Gemma's sandwich norms follow the attention output and the MLP.
    after_site: ClassVar[dict[str, tuple[str, ...]]] = {
        "mlp": ("post_feedforward_layernorm",),
        "attn": ("post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"),
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

    def site_path(self, layer: int, site: str) -> str:
        """The site's module inside decoder layer `layer` ("" = the layer itself)."""
        return self.sites[site].path

    def site_module(self, layer: int, site: str) -> torch.nn.Module:
        return self.layers[layer].get_submodule(self.site_path(layer, site))

    def hook_site(self, layer: int, site: str, fn) -> torch.utils.hooks.RemovableHandle:
        """Call `fn(x)` with the site's (batch, seq, width) tensor on every forward pass."""
        module = self.site_module(layer, site)
        if self.sites[site].read == "output":
            return module.register_forward_hook(lambda m, args, out: fn(out[0] if isinstance(out, tuple) else out))
        return module.register_forward_pre_hook(lambda m, args: fn(args[0]))

    def recorder(self, wanted: Iterable[tuple[int, str]], stop: bool = True) -> Recorder:
        return Recorder(self, wanted, stop)

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

    # --- early exit -------------------------------------------------------------------------------------------
    def trim(self, plan: ExitPlan) -> None:
        """Cut the model in place after what the exit needs: later layers, final norm, LM head, and the tail of the
        exit layer (the modules after the neurons become identities, never run: the recorder stops the pass)."""
        import torch

        decoder = self.decoder
        decoder.layers = decoder.layers[: plan.exit_layer + 1]
        decoder.norm = torch.nn.Identity()
        self.model.lm_head = torch.nn.Identity()
        if plan.full_last:
            return
        layer = self.layers[plan.exit_layer]
        site = "mlp" if plan.mlp_rows else "attn"
        if plan.mlp_rows:
            mlp = layer.get_submodule(self.mlp_path)
            for name in self.mlp_inputs:
                setattr(mlp, name, _rows(getattr(mlp, name), plan.mlp_rows))
        else:
            _replace(layer, self.mlp_path, torch.nn.Identity())
        _replace(layer, self.site_path(plan.exit_layer, site), torch.nn.Identity())
        for name in self.after_site[site]:
            if isinstance(getattr(layer, name, None), torch.nn.Module):
                setattr(layer, name, torch.nn.Identity())

    @classmethod
    def trimmed_config(cls, config, exit_layer: int):
        """A copy of `config` whose decoder ends after `exit_layer`."""
        config = config.__class__.from_dict(config.to_dict())
        text = config.get_text_config()
        text.num_hidden_layers = exit_layer + 1
        if getattr(text, "layer_types", None):
            text.layer_types = text.layer_types[: exit_layer + 1]
        return config

    # --- inputs ----------------------------------------------------------------------------------------------
    multi_image: ClassVar[bool] = True  # whether one prompt may hold several images

    def prompt(self, question: str, n_images: int = 1) -> str:
        content = [{"type": "image"}] * n_images + [{"type": "text", "text": question}]
        messages = [{"role": "user", "content": content}]
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def images_arg(self, images: list[list[Image.Image]]) -> list:
        """How this family's processor wants a batch of images, given as a list of images per sample."""
        return images

    def build_inputs(self, images: list[Image.Image | list[Image.Image]],
                     questions: list[str]) -> dict[str, torch.Tensor]:
        """Batched, left-padded model inputs for one image (or a list of images) and one question per sample."""
        per_sample = [im if isinstance(im, list) else [im] for im in images]
        if not self.multi_image and any(len(ims) != 1 for ims in per_sample):
            raise SnError(f"model type {self.model_type!r} takes one image per question; this sample has "
                          f"{max(len(ims) for ims in per_sample)}")
        prompts = [self.prompt(q, len(ims)) for q, ims in zip(questions, per_sample, strict=True)]
        batch = self.processor(
            images=self.images_arg(per_sample), text=prompts, padding=True, return_tensors="pt",
            **self.processor_kwargs(),
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

    # The transformers processor class this family is fed through without its video processor (which needs
    # torchvision, unusable here); None: `AutoProcessor` builds it.
    image_only_processor: ClassVar[str | None] = None

    @classmethod
    def load_processor(cls, path: str):
        from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

        if cls.image_only_processor is None:
            return AutoProcessor.from_pretrained(path, trust_remote_code=False)  # never run code that came with files
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        images = AutoImageProcessor.from_pretrained(path, trust_remote_code=False)
        make = image_only(cls.image_only_processor)
        return make(images, tokenizer, chat_template=tokenizer.chat_template, **_processor_options(path, make))


def _rows(linear: torch.nn.Linear, rows: tuple[int, ...]) -> torch.nn.Linear:
    import torch

    out = torch.nn.Linear(linear.in_features, len(rows), bias=linear.bias is not None,
                          dtype=linear.weight.dtype, device=linear.weight.device)
    with torch.no_grad():
        out.weight.copy_(linear.weight[list(rows)])
        if linear.bias is not None:
            out.bias.copy_(linear.bias[list(rows)])
    return out


def _replace(root: torch.nn.Module, path: str, module: torch.nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


@functools.cache
def image_only(processor_class: str) -> type:
    """The transformers processor class `processor_class` built without a video processor: we only feed images.
    It keeps the real class name, so the folders it saves load with `AutoProcessor` where torchvision works."""
    import transformers

    parent = getattr(transformers, processor_class)

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        parent.__init__(self, image_processor, tokenizer, video_processor=None, chat_template=chat_template, **kwargs)

    # transformers saves (and we reload) the settings named in the signature: the parent's, less the video processor.
    sig = inspect.signature(parent.__init__)
    __init__.__signature__ = sig.replace(parameters=[p for n, p in sig.parameters.items() if n != "video_processor"])
    return type(processor_class, (parent,), {"__init__": __init__, "__module__": parent.__module__})


def _processor_options(path: str, processor_class: type) -> dict[str, Any]:
    """The processor's own settings saved in `processor_config.json` (e.g. LLaVA-OneVision's image token count)."""
    from pathlib import Path

    file = Path(path) / "processor_config.json"
    if not file.is_file():
        return {}
    known = inspect.signature(processor_class.__init__).parameters
    saved = json.loads(file.read_text(encoding="utf-8"))
    return {k: v for k, v in saved.items() if k in known and k not in ("image_processor", "tokenizer", "chat_template",
                                                                         "video_processor")}
