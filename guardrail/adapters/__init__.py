"""Adapters: files other tools wrote -> `guardrail.result/v1` results.

Pure parsers: a vendor's JSON in, validated results out. The ingest (guardrail.ingest) and the runners'
command engine call exactly :func:`detect_format`, :func:`is_format` and :func:`adapt`. Every error is an
InputError naming the file and the JSON path; an adapter never writes anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from guardrail.adapters import pytest_benchmark, tts_bench, vllm_bench, vllm_omni_diffusion
from guardrail.adapters.context import AdaptDefaults
from guardrail.errors import InputError
from guardrail.schema import Result

FORMATS: tuple[str, ...] = ("vllm-omni-diffusion", "vllm-bench", "tts-bench", "pytest-benchmark")


class _Adapter(Protocol):
    """What each format's module provides."""

    def detect(self, path: Path, data: Any) -> bool: ...

    def adapt(self, path: Path, data: Any, defaults: AdaptDefaults) -> list[Result]: ...


_ADAPTERS: dict[str, _Adapter] = {
    "vllm-omni-diffusion": vllm_omni_diffusion,
    # tts-bench before vllm-bench: vLLM-Omni's CI result files are `vllm bench serve --omni` output plus a
    # `baseline` block, so the more specific reading must get the first look.
    "tts-bench": tts_bench,
    "vllm-bench": vllm_bench,
    "pytest-benchmark": pytest_benchmark,
}

__all__ = ["FORMATS", "AdaptDefaults", "adapt", "detect_format", "is_format"]


def detect_format(path: Path, data: object) -> str | None:
    """The format of a parsed JSON document, or None if no adapter recognises it."""
    for name, module in _ADAPTERS.items():
        if module.detect(Path(path), data):
            return name
    return None


def is_format(path: Path, data: object, fmt: str) -> bool:
    """Whether the adapter of `fmt` recognises the document (a file found in a directory is read only then)."""
    module = _ADAPTERS.get(fmt)
    return module is not None and module.detect(Path(path), data)


def adapt(path: Path, fmt: str, data: object, *, defaults: AdaptDefaults) -> list[Result]:
    module = _ADAPTERS.get(fmt)
    if module is None:
        raise InputError(
            f"unknown adapter format {fmt!r}; one of {', '.join(FORMATS)}", file=str(path), field="--format"
        )
    return module.adapt(Path(path), data, defaults or AdaptDefaults())
