"""`vllm bench serve --save-result` JSON (vLLM, and vLLM-Omni's `--omni` variant with audio/image keys).

One file is one benchmark run: one Result whose metrics are the file's summaries (mean/median/pNN of
TTFT, TPOT, ITL, E2EL, audio TTFP/RTF, denoise step latency; throughputs). The per-request lists that
`--save-detailed` adds are not stored as metrics (they are not independent processes); their count of
errors is kept in `extra`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from guardrail.adapters.context import AdaptContext, AdaptDefaults, request_outcome, summary_metric
from guardrail.schema import Result, Status

FORMAT = "vllm-bench"

# Keys that identify the benchmark configuration (the series), as the file names them.
DIMS = (
    "model_id",
    "endpoint_type",
    "backend",
    "label",
    "num_prompts",
    "request_rate",
    "burstiness",
    "max_concurrency",
    "random_input_len",
    "random_output_len",
)

# Whole-run rates: (key, unit, higher is better). `max_output_tokens_per_s` is a peak, `rtfx` the inverse
# real-time factor of audio (seconds of audio per second of wall time, over the run).
RATES = (
    ("request_throughput", "req/s", True),
    ("request_goodput", "req/s", True),
    ("output_throughput", "tok/s", True),
    ("total_token_throughput", "tok/s", True),
    ("max_output_tokens_per_s", "tok/s", True),
    ("audio_throughput", "audio_s/s", True),
    ("image_throughput", "img/s", True),
    ("rtfx", "x", True),
)
# Per-request statistics: `<stat>_<base>` with stat mean/median/pNN (std is a spread, not a level).
_STAT = re.compile(r"^(mean|median|p\d+(?:\.\d+)?)_(.+)$")
# Bases that are not `*_ms` latencies but still performance (lower is better).
_RATIO_BASES = {"audio_rtf": "x"}
# Bases that describe the output, not the speed: kept out of the judged metrics.
_NOT_PERF = {"audio_duration_s", "input_tokens_per_s"}


def detect(path: Path, data: Any) -> bool:
    return (
        isinstance(data, dict)
        and "completed" in data
        and "duration" in data
        and ("request_throughput" in data or "endpoint_type" in data or "model_id" in data)
    )


def run_metrics(ctx: AdaptContext, data: dict[str, Any], at: str = "$") -> list[dict[str, Any]]:
    """Every summary the file holds, skipping zeros: in these files 0 means "not produced in this run"
    (image keys on an audio run, token throughput of a TTS run), never a measured speed."""
    out: list[dict[str, Any]] = []
    for key, unit, higher in RATES:
        v = ctx.num(data.get(key), f"{at}.{key}")
        if v:
            summary = "rate" if not key.startswith("max_") else "max"
            out.append(summary_metric(key, unit, v, summary=summary, higher=higher))
    for key in data:
        m = _STAT.match(key)
        if not m or m.group(2) in _NOT_PERF:
            continue
        stat, base = m.group(1), m.group(2)
        if base.endswith("_ms"):
            unit = "ms"
        elif base in _RATIO_BASES:
            unit = _RATIO_BASES[base]
        else:
            continue
        v = ctx.num(data[key], f"{at}.{key}")
        if v:
            out.append(summary_metric(key, unit, v, summary=stat))
    return out


def run_status(ctx: AdaptContext, data: dict[str, Any], at: str = "$") -> tuple[Status, dict[str, str] | None]:
    return request_outcome(
        ctx.num(data.get("completed"), f"{at}.completed"), ctx.num(data.get("failed"), f"{at}.failed")
    )


def hardware_of(defaults: AdaptDefaults) -> tuple[str, str]:
    """These files never name the hardware: --hardware, else "unknown" (a series of its own)."""
    return (defaults.hardware, "defaults") if defaults.hardware else ("unknown", "unknown")


def serve_result(
    ctx: AdaptContext,
    data: dict[str, Any],
    *,
    name: str,
    dims: dict[str, str],
    family: str | None,
    extra: dict[str, Any],
) -> Result:
    status, error = run_status(ctx, data)
    metrics = run_metrics(ctx, data) if data.get("completed") else []
    hardware, hw_from = hardware_of(ctx.defaults)
    errors = data.get("errors")
    started = ctx.started(
        data.get("date"), "$.date", missing="no run time: neither `date` nor a YYYYMMDD-HHMMSS file-name suffix"
    )
    return ctx.result(
        "$",
        started=started,
        source=ctx.source(),
        hardware=hardware,
        name=name,
        family=family,
        dims=dims,
        status=status,
        error=error,
        metrics=metrics,
        extra={
            "hardware_from": hw_from,
            **({"request_errors": sum(1 for e in errors if e)} if isinstance(errors, list) else {}),
            **{
                k: data[k]
                for k in (
                    "duration",
                    "completed",
                    "failed",
                    "total_input_tokens",
                    "total_output_tokens",
                    "total_audio_duration_s",
                    "total_images",
                    "max_concurrent_requests",
                )
                if data.get(k) is not None
            },
            **extra,
        },
    )


def family_of(model: str | None) -> str | None:
    if not model:
        return None
    base = model.rstrip("/").rsplit("/", 1)[-1].lower()
    # Drop size / variant suffixes: "Qwen3-TTS-12Hz-1.7B-Base" -> "qwen3-tts", "Llama-3.1-8B" -> "llama-3.1".
    parts = []
    for part in base.split("-"):
        if re.fullmatch(r"\d+(\.\d+)?[bmk]|\d+hz|base|instruct|chat|customvoice|voicedesign", part):
            break
        parts.append(part)
    return "-".join(parts) or base


def adapt(path: Path, data: Any, defaults: AdaptDefaults) -> list[Result]:
    ctx = AdaptContext(path, FORMAT, defaults)
    data = ctx.obj(data, "$")
    dims = {k: ("" if data.get(k) is None else str(ctx.text(data.get(k), f"$.{k}"))) for k in DIMS}
    model = dims["model_id"] or None
    name = dims["label"] or model or path.stem
    if dims["max_concurrency"]:
        name += f"/c{dims['max_concurrency']}"
    if dims["request_rate"] and dims["request_rate"] != "inf":
        name += f"/rate{dims['request_rate']}"
    if dims["num_prompts"]:
        name += f"/n{dims['num_prompts']}"
    return [serve_result(ctx, data, name=name, dims=dims, family=family_of(model), extra={})]
