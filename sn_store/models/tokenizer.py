"""A small BPE tokenizer trained locally (no downloads) for the tiny built-in models."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

# Words the synthetic suite and the chat templates use, so that they tokenize into few pieces.
_WORDS = ["yes", "no", "is", "there", "a", "an", "the", "in", "image", "picture", "of", "what", "colour", "color", "shape", "square", "circle", "triangle", "star", "red", "green", "blue", "yellow", "purple", "orange", "white", "black", "gray", "how", "many", "shapes", "are", "left", "right", "above", "below", "of", "to", "answer", "question", "using", "single", "word", "or", "phrase", "with", "one", "two", "three", "four", "five", "six", "zero", "letter", "option", "options", "A", "B", "C", "D", "user", "assistant", "system", "USER", "ASSISTANT", "User", "Assistant", "which", "side", "object"]


def _corpus(repeat: int = 20) -> list[str]:
    lines = [" ".join(_WORDS[i : i + 8]) for i in range(0, len(_WORDS), 8)]
    lines += [w.capitalize() for w in _WORDS] + [f" {w}" for w in _WORDS]
    lines += ["Is there a red circle in the image? Answer the question using a single word or phrase."]
    lines += [str(i) for i in range(100)]
    return lines * repeat


def train_tokenizer(special_tokens: list[str], chat_template: str, named: dict[str, str] | None = None,
                    vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on the built-in corpus; deterministic for a given input. `special_tokens` start with
    bos, eos and pad; `named` are special tokens a processor reads by attribute (Gemma 3's `boi_token`)."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=special_tokens[0],
        eos_token=special_tokens[1],
        pad_token=special_tokens[2],
        extra_special_tokens=dict(named or {}),
    )
    fast.chat_template = chat_template
    fast.padding_side = "left"
    return fast
