"""Tokenizers and processors built in code, so that no run ever reaches the model hub.

A synthetic tokenizer is byte-level: every UTF-8 byte is one token, and the special tokens that the
pipelines' prompt templates use sit at the ids the real model's config expects (`special_base_id`).
Token counts therefore differ from the real tokenizer's (bytes, not BPE merges); prompts are padded or
truncated by the pipelines the same way, so the shapes the models see stay those of a real run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Qwen2 / Qwen2.5-VL special tokens in id order from <|endoftext|> (151643 in the real vocabulary).
QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def _byte_level_tokenizer(specials: dict[str, int], byte_offset: int):
    """A `tokenizers.Tokenizer`: byte-level BPE without merges (one token per byte) plus specials."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: byte_offset + i for i, ch in enumerate(sorted(alphabet))}
    vocab.update(specials)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tok


def qwen2_tokenizer(special_base_id: int = 151643, byte_offset: int = 0):
    """Qwen2-style tokenizer: <|image_pad|> etc. at the real ids when special_base_id=151643."""
    from transformers import PreTrainedTokenizerFast

    specials = {s: special_base_id + i for i, s in enumerate(QWEN_SPECIALS)}
    tok = PreTrainedTokenizerFast(
        tokenizer_object=_byte_level_tokenizer(specials, byte_offset),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="right",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    return tok


def umt5_tokenizer(byte_offset: int = 3):
    """UMT5/T5-style tokenizer: <pad>=0, </s>=1, <unk>=2, then bytes; appends </s> like T5."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    specials = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    raw = _byte_level_tokenizer(specials, byte_offset)
    raw.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def byt5_tokenizer():
    """ByT5 needs no vocabulary file: its ids are bytes + 3."""
    from transformers import ByT5Tokenizer

    return ByT5Tokenizer()


def qwen2vl_processor(tokenizer: Any, image_processor: dict[str, Any] | None = None):
    """Qwen2-VL processor from the PIL image processor (no torchvision) and a synthetic tokenizer."""
    from transformers import Qwen2VLImageProcessorPil, Qwen2VLProcessor

    class _ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
        # Without torchvision transformers has no video-processor registry to check the (absent)
        # video processor against; the edit pipelines never pass videos, so skip that one check.
        def check_argument_for_proper_class(self, argument_name, argument):
            if argument_name == "video_processor" and argument is None:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    return _ImageOnlyQwen2VLProcessor(
        image_processor=Qwen2VLImageProcessorPil(**(image_processor or {})), tokenizer=tokenizer
    )


SYNTHETIC: dict[str, Callable[..., Any]] = {
    "qwen2": qwen2_tokenizer,
    "umt5": umt5_tokenizer,
    "byt5": byt5_tokenizer,
}
