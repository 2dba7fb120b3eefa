"""Reference baselines from vLLM-Omni's perf test cases: their per-config `baseline` blocks -> rows keyed
the way the adapters key series (guardrail.ingest.reference holds the rows, their YAML and the matching).

vLLM-Omni's test cases (`tests/dfx/perf/tests/*.json`) carry, per benchmark config, the values its own CI
asserts against: flat (`{"latency_mean": 27.6}`), per hardware (`{"H100": {...}, "A3": {...}}`), or per
sweep step (a list indexed like `max-concurrency`, or a dict keyed by it). It runs no command and touches
no database.

What can be read:
* a test-case JSON (a list of `{test_name, server_params, benchmark_params: [...]}`), diffusion or TTS;
* a `diffusion_result_*.json` (its records' `benchmark_params.baseline`), when the repo is unreachable;
* a TTS CI `result_*.json` (its top-level `baseline`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guardrail.adapters import tts_bench
from guardrail.adapters import vllm_omni_diffusion as diffusion
from guardrail.adapters.hardware import normalize_hardware
from guardrail.errors import InputError
from guardrail.ingest.reference import ReferenceBaseline, write_reference_yaml
from guardrail.schema import check_document, loads, unit_kind

# Control characters (Unicode Cc): a name carrying one would break the YAML comment that cites the test case.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
NAME_CHARS = 200  # what the result schema allows a workload, metric or hardware name
_SHAPE_ERRORS = (TypeError, AttributeError, KeyError, IndexError, ValueError)

_HW_KEY = re.compile(r"^([A-Za-z]{1,3}\d{1,4}[A-Za-z]*|Ascend[\w-]*|NVIDIA[\w-]*|AMD[\w-]*|MI\d+\w*|cpu)$")


def metric_unit(metric: str) -> tuple[str, str]:
    """Unit and direction of a baseline metric, as the adapters emit the same metric."""
    higher = "higher_is_better"
    lower = "lower_is_better"
    if metric == "throughput_qps" or metric in ("request_throughput", "request_goodput"):
        return "req/s", higher
    if metric == "audio_throughput":
        return "audio_s/s", higher
    if metric.endswith("output_throughput") or metric.endswith("token_throughput"):
        return "tok/s", higher
    if metric.startswith("latency_"):
        return "s", lower
    if metric.startswith("peak_memory_mb"):
        return "MB", lower
    if metric.endswith("_ms"):
        return "ms", lower
    if metric.endswith("audio_rtf") or metric.endswith("_rtf"):
        return "x", lower
    return "", lower


def load_reference_baselines(
    path: str | Path, *, source: str | None = None, default_hardware: str | None = None
) -> list[ReferenceBaseline]:
    """Every reference value in one file. `source` names it in the output (e.g. its path in the repo).

    A flat block (no per-hardware keys) belongs to the one hardware the test case's marks pin; when the
    marks pin none or several, to `default_hardware` (None: the row has no hardware and matches nothing).
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", file=str(p)) from None
    data = loads(raw, file=str(p))  # bad JSON or UTF-8, or nesting too deep for the parser: one line
    problem = check_document(data)  # nesting past 64 levels, NUL, integers beyond 64 bits
    if problem is not None:
        raise InputError(problem[1], file=str(p), field=problem[0])
    src = source or str(p)
    if isinstance(data, dict):
        return _guarded(p, "$", lambda: _from_tts_result(p, data, src))
    if not isinstance(data, list):
        raise InputError("expected a JSON array of test cases or result records", file=str(p), field="$")
    out: list[ReferenceBaseline] = []
    for i, case in enumerate(data):
        at = f"$[{i}]"
        if not isinstance(case, dict):
            raise InputError("expected a JSON object", file=str(p), field=at)
        if isinstance(case.get("benchmark_params"), list):
            out.extend(_guarded(p, at, lambda c=case, a=at: _from_test_case(p, c, a, src, default_hardware)))
        elif "result" in case or isinstance(case.get("benchmark_params"), dict):
            out.extend(_guarded(p, at, lambda c=case, a=at: _from_result_record(p, c, a, src)))
        else:
            raise InputError("neither a test case (benchmark_params list) nor a result record", file=str(p), field=at)
    return out


def _guarded(p: Path, at: str, read: Any) -> list[ReferenceBaseline]:
    # A shape the reader does not expect (a list where a name goes, ...) is the file's fault, not a crash.
    try:
        return read()
    except InputError:
        raise
    except _SHAPE_ERRORS as exc:
        raise InputError(
            f"unexpected value in a test case ({type(exc).__name__}: {exc})"[:300], file=str(p), field=at
        ) from None


def _check_name(value: str | None, *, p: Path, field: str) -> None:
    if value is None:
        return
    if _CONTROL.search(value):
        raise InputError(f"contains a control character ({value[:80]!r})", file=str(p), field=field)
    if len(value) > NAME_CHARS:
        raise InputError(f"longer than {NAME_CHARS} characters ({len(value)})", file=str(p), field=field)


def _check_value(v: float, unit: str, *, p: Path, field: str) -> None:
    if not math.isfinite(v):
        raise InputError(f"reference value {v} is not a finite number", file=str(p), field=field)
    kind = unit_kind(unit)
    if (kind in ("time", "rate") and v <= 0) or (kind == "memory" and v < 0):
        need = "non-negative" if kind == "memory" else "positive"
        raise InputError(f"reference value {v:g} {unit} must be {need}", file=str(p), field=field)


def config_dims(
    test_name: str, model: str | None, serve_args: dict[str, Any], bp: dict[str, Any], max_concurrency: Any
) -> dict[str, str]:
    """The dims a diffusion config determines, derived the way vLLM-Omni's writer derives its report
    columns (resolution, Parallelism, Cache, compile, Quantization, offload)."""
    width, height = bp.get("width", "unknown width"), bp.get("height", "unknown height")
    keys = diffusion.PARALLEL_SERVE_ARGS
    parallel = ",".join(f"{k}={serve_args[k]}" for k in keys if k in serve_args) or "none"
    offload = [k for k in ("enable-cpu-offload", "enable-layerwise-offload") if k in serve_args]
    columns: dict[str, Any] = {
        "Model": model,
        "Task": bp.get("task", "t2i"),
        "resolution": f"{width}x{height}",
        "Parallelism": parallel,
        "Cache": str(serve_args["cache-backend"]) if "cache-backend" in serve_args else "disabled",
        "compile": "disabled" if "enforce-eager" in serve_args else "enabled",
        "Attn_backend": serve_args.get("diffusion-attention-backend"),
        "max_concurrency": max_concurrency,
        "Quantization": str(serve_args["quantization"]) if serve_args.get("quantization") else "disabled",
        "offload": f"enabled({';'.join(offload)})" if offload else "disabled",
    }
    dims = diffusion.series_dims(test_name, bp.get("name"), columns)
    if columns["Attn_backend"] is None:
        del dims["Attn_backend"]
    return dims


def _hardware_marks(case: dict[str, Any]) -> list[str]:
    """`mark: [{"hardware_marks": {"res": {"cuda": "H100", "npu": "A3"}}}, ...]` (list or dict form)."""
    marks = case.get("mark")
    items = marks if isinstance(marks, list) else [marks]
    out: list[str] = []
    for m in items:
        if isinstance(m, dict) and isinstance(m.get("hardware_marks"), dict):
            res = m["hardware_marks"].get("res")
            if isinstance(res, dict):
                out.extend(str(v) for v in res.values())
    return out


def _split_hardware(baseline: dict[str, Any], pinned: list[str]) -> list[tuple[str | None, dict[str, Any]]]:
    """Per-hardware blocks -> [(hw, block)]; a flat block -> [(the one hardware the case pins, or None)]."""
    if (
        baseline
        and all(isinstance(v, dict) for v in baseline.values())
        and all(_HW_KEY.match(str(k)) and not str(k).isdigit() for k in baseline)
    ):
        return [(normalize_hardware(str(hw)), block) for hw, block in baseline.items()]
    return [(pinned[0] if len(pinned) == 1 else None, baseline)]


def _step_value(raw: Any, index: int, flow: Any) -> Any:
    """One sweep step's value: list -> by index, dict -> by concurrency/rate key, scalar -> itself."""
    if isinstance(raw, list | tuple):
        return raw[index] if 0 <= index < len(raw) else None
    if isinstance(raw, dict):  # JSON object keys are strings: look the step up by its text
        return raw.get(str(flow)) if flow is not None else None
    return raw


def _as_list(v: Any) -> list[Any]:
    return [] if v is None else list(v) if isinstance(v, list | tuple) else [v]


def _rows(
    baseline: dict[str, Any],
    pinned: list[str],
    index: int = 0,
    flow: Any = None,
    *,
    workload: str,
    dims: dict[str, str],
    src: str,
    test_name: str,
    p: Path,
    at: str,
) -> list[ReferenceBaseline]:
    """The numeric values of one sweep step of a baseline block, per hardware (see :func:`_split_hardware`).
    `at`: the block's JSON path, for errors."""
    _check_name(test_name, p=p, field=at)
    _check_name(workload, p=p, field=at)
    out = []
    for hardware, block in _split_hardware(baseline, pinned):
        for metric, raw in block.items():
            v = _step_value(raw, index, flow)
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue
            where = f"{at}.{hardware}.{metric}" if hardware and hardware in baseline else f"{at}.{metric}"
            where += f"[{index}]" if isinstance(raw, list) else f".{flow}" if isinstance(raw, dict) else ""
            _check_name(metric, p=p, field=where)
            _check_name(hardware, p=p, field=where)
            unit, direction = metric_unit(metric)
            _check_value(float(v), unit, p=p, field=where)
            out.append(
                ReferenceBaseline(workload, metric, hardware, float(v), unit, direction, src, dict(dims), test_name)
            )
    return out


def _from_test_case(
    p: Path, case: dict[str, Any], at: str, src: str, default_hardware: str | None
) -> list[ReferenceBaseline]:
    test_name = case.get("test_name")
    if not isinstance(test_name, str) or not test_name:
        raise InputError("required field is missing", file=str(p), field=f"{at}.test_name")
    sp = _dict(case.get("server_params"))
    serve_args = _dict(sp.get("serve_args"))
    pinned = _hardware_marks(case)
    if len(pinned) != 1 and default_hardware:
        pinned = [default_hardware]
    out: list[ReferenceBaseline] = []
    for j, bp in enumerate(case["benchmark_params"]):
        b_at = f"{at}.benchmark_params[{j}]"
        if not isinstance(bp, dict):
            raise InputError("expected a JSON object", file=str(p), field=b_at)
        baseline = bp.get("baseline")
        if baseline is None or bp.get("enabled") is False:
            continue
        if not isinstance(baseline, dict):
            raise InputError("expected a JSON object", file=str(p), field=f"{b_at}.baseline")
        block_at = f"{b_at}.baseline"
        for key in ("max-concurrency", "max_concurrency", "request_rate", "num_prompts"):
            if any(isinstance(v, dict | list) for v in _as_list(bp.get(key))):
                raise InputError("expected a number or a list of numbers", file=str(p), field=f"{b_at}.{key}")
        if "name" in bp:  # diffusion config: one workload per max-concurrency step
            if bp["name"] is not None and not isinstance(bp["name"], str):
                raise InputError("expected a string", file=str(p), field=f"{b_at}.name")
            name = diffusion.workload_name(test_name, bp.get("name"))
            for k, flow in enumerate(_as_list(bp.get("max-concurrency")) or [None]):
                dims = config_dims(test_name, sp.get("model"), serve_args, bp, flow)
                out += _rows(
                    baseline, pinned, k, flow, workload=name, dims=dims, src=src, test_name=test_name, p=p, at=block_at
                )
        else:  # vllm bench serve --omni config (TTS/omni): the CI's result file name is the test case
            flows = _as_list(bp.get("max_concurrency")) or _as_list(bp.get("request_rate"))
            prompts = _as_list(bp.get("num_prompts"))
            if len(prompts) == 1 and len(flows) > 1:
                prompts = prompts * len(flows)
            for k, (flow, n) in enumerate(zip(flows, prompts, strict=False)):
                case_name = tts_case_name(
                    test_name,
                    bp.get("dataset_name"),
                    flow,
                    n,
                    bp.get("random_input_len"),
                    bp.get("random_output_len"),
                )
                dims = {"test_case": case_name}
                out += _rows(
                    baseline,
                    pinned,
                    k,
                    flow,
                    workload=case_name,
                    dims=dims,
                    src=src,
                    test_name=test_name,
                    p=p,
                    at=block_at,
                )
    return out


def _token(v: Any) -> str:
    if v is None:
        return "na"
    s = str(v).strip()
    for bad in '/\\:*?"<>|':
        s = s.replace(bad, "_")
    return s or "na"


def tts_case_name(test_name: str, dataset: Any, flow: Any, num_prompts: Any, in_len: Any, out_len: Any) -> str:
    """The test case as vLLM-Omni's CI names its result file (`result_<this>_<YYYYMMDD-HHMMSS>.json`)."""
    return f"{test_name}_{dataset}_{flow}_{num_prompts}_in{_token(in_len)}_out{_token(out_len)}"


def _from_result_record(p: Path, rec: dict[str, Any], at: str, src: str) -> list[ReferenceBaseline]:
    bp = _dict(rec.get("benchmark_params"))
    baseline = rec.get("baseline") if isinstance(rec.get("baseline"), dict) else bp.get("baseline")
    if not isinstance(baseline, dict) or not baseline:
        return []
    test_name = str(rec.get("test_name") or "")
    columns = {k: rec.get(k) for k in diffusion.DIMS}
    dims = diffusion.series_dims(test_name, bp.get("name"), columns)
    hw_raw = str(rec.get("Hardware") or "").strip()
    if hw_raw:
        hardware: str | None = normalize_hardware(hw_raw)
    elif diffusion.BUILDKITE_PIPELINE.search(str(rec.get("build_url") or "")):
        hardware = diffusion.BUILDKITE_HARDWARE
    else:
        hardware = None
    name = diffusion.workload_name(test_name, bp.get("name"))
    block = f"{at}.baseline" if isinstance(rec.get("baseline"), dict) else f"{at}.benchmark_params.baseline"
    return _rows(
        baseline, [hardware] if hardware else [], workload=name, dims=dims, src=src, test_name=test_name, p=p, at=block
    )


def _from_tts_result(p: Path, data: dict[str, Any], src: str) -> list[ReferenceBaseline]:
    baseline = data.get("baseline")
    m = tts_bench.RESULT_NAME.match(p.stem)
    if not isinstance(baseline, dict) or not m:
        raise InputError("not a vLLM-Omni CI result_*.json with a baseline block", file=str(p), field="$.baseline")
    case = m.group(1)
    return _rows(baseline, [], workload=case, dims={"test_case": case}, src=src, test_name=case, p=p, at="$.baseline")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def import_test_cases(
    sources: Sequence[tuple[str | Path, str, str, str]],
    out_dir: str | Path,
    *,
    default_hardware: str | None = "H100",
) -> list[Path]:
    """Import test-case files into `out_dir`, earlier sources winning per test case.

    `sources`: (local file, path in the repo, repo, commit). A test case already taken from an earlier
    source is skipped in later ones, so a per-hardware upstream file can override a fork's flat one.
    """
    taken: set[str] = set()
    written: list[Path] = []
    for local, repo_path, repo, commit in sources:
        refs = load_reference_baselines(local, source=repo_path, default_hardware=default_hardware)
        fresh = [r for r in refs if r.test_case not in taken]
        taken |= {r.test_case for r in fresh}
        by_case: dict[str, list[ReferenceBaseline]] = {}
        for r in fresh:
            by_case.setdefault(r.test_case, []).append(r)
        for refs_of_case in by_case.values():
            written += write_reference_yaml(refs_of_case, out_dir, repo=repo, commit=commit)
    return sorted(set(written))
