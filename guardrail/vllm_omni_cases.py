"""vLLM-Omni's diffusion perf cases (`tests/dfx/perf/tests/*.json`) as workloads of the `vllm-omni-serve` engine.

A case file is a list of test cases (`test_name`, `mark`, `server_params`, `benchmark_params: [...]`); each entry of
`benchmark_params` becomes one workload. Pure: JSON in, workload documents and series identities out. The series
identity is the one the `vllm-omni-diffusion` adapter computes for the `diffusion_result_*.json` record the case
produces (:func:`report_columns` derives the report columns the way vLLM-Omni's writer does), so results run here
continue the series that vLLM-Omni's own CI history holds. The runner's engine (runners.engines.vllm_omni_serve)
uses the same functions to build the command lines and the record.
"""

from __future__ import annotations

import json
import re
from typing import Any

from guardrail.adapters import vllm_omni_diffusion as diffusion
from guardrail.adapters.identity import digest
from guardrail.errors import InputError

REPO = "vllm-project/vllm-omni"
# run_diffusion_benchmark.py does `os.environ.setdefault("DIFFUSION_ATTENTION_BACKEND", "FLASH_ATTN")`, and its
# writer puts that value in the record's `Attn_backend` column (a series dimension).
DEFAULT_ATTN_BACKEND = "FLASH_ATTN"
TASKS = ("t2i", "i2i", "ti2i", "t2v", "i2v", "ti2v")
VIDEO_TASKS = ("t2v", "i2v", "ti2v")
# diffusion_benchmark_serving.py --backend -> the endpoint its requests go to (benchmarks/diffusion/backends.py).
ENDPOINTS = {"vllm-omni": "/v1/chat/completions", "openai": "/v1/images/generations", "v1/videos": "/v1/videos"}
# Keys of a benchmark_params entry that are not client flags (run_diffusion_benchmark.py's exclude_keys; dataset
# and task are passed first, explicitly). `backend` is ours: which client backend a config uses.
NOT_FLAGS = ("baseline", "dataset", "task", "name", "backend", "enabled", "skip-performance-assertion")
SWEEP_KEYS = ("max-concurrency", "num-prompts")


# --- what one benchmark config runs -------------------------------------------------------------------------
def steps(bp: dict[str, Any]) -> list[dict[str, Any]]:
    """A config's sweep steps: `max-concurrency: [1, 2, 4]` with `num-prompts: [20, 40, 80]` (or one number) is
    three client runs; each step holds scalars only and no baseline."""
    base = {k: v for k, v in bp.items() if k != "baseline"}
    flows = _as_list(bp.get("max-concurrency"))
    prompts = _as_list(bp.get("num-prompts"))
    if len(flows) <= 1 and len(prompts) <= 1:
        return [{**base, **{k: _as_list(bp[k])[0] for k in SWEEP_KEYS if _as_list(bp.get(k))}}]
    n = max(len(flows), len(prompts))
    out = []
    for i in range(n):
        step = dict(base)
        if flows:
            step["max-concurrency"] = flows[i if len(flows) > 1 else 0]
        if prompts:
            step["num-prompts"] = prompts[i if len(prompts) > 1 else 0]
        out.append(step)
    return out


def backend_of(bp: dict[str, Any]) -> str:
    """The client backend: the config's own `backend`, else the one vLLM-Omni's CI uses for the task."""
    if isinstance(bp.get("backend"), str) and bp["backend"]:
        return str(bp["backend"])
    return "v1/videos" if bp.get("task") in VIDEO_TASKS else "vllm-omni"


def endpoint_of(bp: dict[str, Any]) -> str:
    """The endpoint the config's requests go to: its own `endpoint` (newer clients take one), else its backend's."""
    if isinstance(bp.get("endpoint"), str) and bp["endpoint"]:
        e = str(bp["endpoint"])
        return ENDPOINTS.get(e, e if e.startswith("/") else f"/{e}")
    backend = backend_of(bp)
    return ENDPOINTS.get(backend, backend if backend.startswith("/") else f"/{backend}")


def serve_flags(serve_args: dict[str, Any]) -> list[str]:
    """`serve_args` -> `vllm serve` flags, as run_diffusion_benchmark.py builds them: `true` is a bare flag,
    `false` is left out, an object is compact JSON."""
    return _flags(serve_args, ())


def client_flags(step: dict[str, Any]) -> list[str]:
    """One sweep step -> the benchmark client's flags after --dataset/--task (lists and objects as compact JSON)."""
    return _flags(step, NOT_FLAGS)


def _flags(args: dict[str, Any], skip: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for key, value in args.items():
        if key in skip or value is None:
            continue
        flag = f"--{key}"
        if isinstance(value, bool):
            if value:
                out.append(flag)
        elif isinstance(value, dict | list):
            out += [flag, json.dumps(value, separators=(",", ":"))]
        else:
            out += [flag, str(value)]
    return out


# --- the series a config's record belongs to ------------------------------------------------------------------
def report_columns(
    model: str | None, serve_args: dict[str, Any], step: dict[str, Any], attn_backend: str | None
) -> dict[str, Any]:
    """The report columns vLLM-Omni's writer puts in a `diffusion_result_*.json` record (the adapter's DIMS)."""
    parallel = ",".join(f"{k}={serve_args[k]}" for k in diffusion.PARALLEL_SERVE_ARGS if k in serve_args) or "none"
    offload = [k for k in ("enable-cpu-offload", "enable-layerwise-offload") if k in serve_args]
    return {
        "Model": model,
        "Task": step.get("task", "t2i"),
        "resolution": f"{step.get('width', 'unknown width')}x{step.get('height', 'unknown height')}",
        "Parallelism": parallel,
        "Cache": str(serve_args["cache-backend"]) if "cache-backend" in serve_args else "disabled",
        "compile": "disabled" if "enforce-eager" in serve_args else "enabled",
        "Attn_backend": serve_args.get("diffusion-attention-backend") or attn_backend,
        "max_concurrency": step.get("max-concurrency"),
        "Quantization": str(serve_args["quantization"]) if serve_args.get("quantization") else "disabled",
        "offload": f"enabled({';'.join(offload)})" if offload else "disabled",
    }


def series_of(
    test_name: str,
    model: str | None,
    serve_args: dict[str, Any],
    step: dict[str, Any],
    attn_backend: str | None = DEFAULT_ATTN_BACKEND,
) -> dict[str, Any]:
    """Workload name, digest and dims of one step, exactly as the adapter computes them for its record."""
    dims = diffusion.series_dims(test_name, step.get("name"), report_columns(model, serve_args, step, attn_backend))
    return {"name": diffusion.workload_name(test_name, step.get("name")), "digest": digest(dims), "dims": dims}


# --- a case file -> workload documents -------------------------------------------------------------------------
def hardware_marks(case: dict[str, Any]) -> tuple[dict[str, str], int | None, list[str]]:
    """`mark` in either form vLLM-Omni writes it -> ({device type: hardware}, num_cards, other marks)."""
    raw = case.get("mark")
    items: list[Any]
    if isinstance(raw, dict):
        items = [{"hardware_marks": raw.get("hardware_marks")}, *_as_list(raw.get("marks"))]
    else:
        items = _as_list(raw)
    res: dict[str, str] = {}
    cards: int | None = None
    marks: list[str] = []
    for m in items:
        if isinstance(m, str):
            marks.append(m)
        elif isinstance(m, dict) and isinstance(m.get("hardware_marks"), dict):
            hw = m["hardware_marks"]
            if isinstance(hw.get("res"), dict):
                res.update({str(k): str(v) for k, v in hw["res"].items()})
            if isinstance(hw.get("num_cards"), int) and not isinstance(hw.get("num_cards"), bool):
                cards = int(hw["num_cards"])
    return res, cards, marks


def workload_name(test_name: str, bench: str | None) -> str:
    """The workload file's name (`[a-z0-9][a-z0-9._-]*`); the series keeps vLLM-Omni's `test_name/bench`."""
    raw = f"{test_name}.{bench}" if bench else test_name
    slug = re.sub(r"[^a-z0-9._-]+", "-", raw.lower()).strip("-._")
    return slug or "case"


def convert(
    data: Any,
    *,
    file: str,
    lanes: list[str],
    source: dict[str, str | None] | None = None,
    timeout_s: float | None = None,
) -> list[dict[str, Any]]:
    """Every benchmark config of a parsed case file -> one workload document (the YAML's content). Bad shapes
    raise InputError naming `file` and the JSON path. Configs with `"enabled": false` are skipped, as the CI does."""
    if not isinstance(data, list) or not data:
        raise InputError("expected a non-empty JSON array of test cases", file=file, field="$")
    out: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for i, case in enumerate(data):
        at = f"$[{i}]"
        if not isinstance(case, dict):
            raise InputError("expected a JSON object (a test case)", file=file, field=at)
        test_name = case.get("test_name")
        if not isinstance(test_name, str) or not test_name.strip():
            raise InputError("required field is missing (a non-empty string)", file=file, field=f"{at}.test_name")
        sp = case.get("server_params")
        if not isinstance(sp, dict):
            raise InputError("required field is missing (an object)", file=file, field=f"{at}.server_params")
        model = sp.get("model")
        if not isinstance(model, str) or not model.strip():
            raise InputError("required field is missing (a string)", file=file, field=f"{at}.server_params.model")
        serve_args = sp.get("serve_args", {})
        if not isinstance(serve_args, dict):
            raise InputError("expected an object", file=file, field=f"{at}.server_params.serve_args")
        if case.get("server_type", "vllm-omni") != "vllm-omni":
            raise InputError(
                f"unsupported server_type {case.get('server_type')!r} (only vllm-omni)",
                file=file,
                field=f"{at}.server_type",
            )
        bps = case.get("benchmark_params")
        if isinstance(bps, dict) and "$ref" in bps:
            raise InputError("a $ref must be resolved before conversion", file=file, field=f"{at}.benchmark_params")
        if not isinstance(bps, list) or not bps:
            raise InputError("required field is missing (a non-empty list)", file=file, field=f"{at}.benchmark_params")
        res, cards, marks = hardware_marks(case)
        for j, bp in enumerate(bps):
            b_at = f"{at}.benchmark_params[{j}]"
            _check_config(bp, file=file, at=b_at)
            if bp.get("enabled") is False:
                continue
            name = workload_name(test_name, bp.get("name"))
            if name in seen:
                raise InputError(
                    f"two configs make the same workload {name!r} (first at {seen[name]})", file=file, field=b_at
                )
            seen[name] = b_at
            series = [{**series_of(test_name, model, serve_args, step), "step": k} for k, step in enumerate(steps(bp))]
            vo: dict[str, Any] = {
                "test_name": test_name,
                "model": model,
                "serve_args": serve_args,
                "benchmark_params": {k: v for k, v in bp.items() if k != "baseline"},
                "hardware_marks": res,
                "num_cards": cards
                if cards is not None
                else diffusion.device_count_of(series[0]["dims"]["Parallelism"], serve_args),
                "marks": marks,
                "source": dict(source or {}),
                "series": [{"name": s["name"], "digest": s["digest"], "step": s["step"]} for s in series],
            }
            if isinstance(bp.get("baseline"), dict):
                vo["baseline"] = bp["baseline"]
            doc: dict[str, Any] = {
                "name": name,
                "family": diffusion.family_of(model) or "vllm-omni",
                "description": str(case.get("description") or f"vLLM-Omni perf case {test_name}"),
                "lanes": list(lanes),
                "engine": "vllm-omni-serve",
                "vllm_omni": vo,
            }
            if timeout_s is not None:
                doc["timeout_s"] = timeout_s
            out.append(doc)
    return out


def _check_config(bp: Any, *, file: str, at: str) -> None:
    if not isinstance(bp, dict):
        raise InputError("expected a JSON object (a benchmark config)", file=file, field=at)
    if not isinstance(bp.get("name"), str) or not bp["name"].strip():
        raise InputError("required field is missing (a non-empty string)", file=file, field=f"{at}.name")
    task = bp.get("task", "t2i")
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; known: {', '.join(TASKS)}", file=file, field=f"{at}.task")
    lengths = {}
    for key in SWEEP_KEYS:
        values = _as_list(bp.get(key))
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise InputError("expected a positive integer or a list of them", file=file, field=f"{at}.{key}")
        lengths[key] = len(values)
    if min(lengths.values()) > 1 and len(set(lengths.values())) > 1:
        raise InputError(
            f"max-concurrency has {lengths['max-concurrency']} steps but num-prompts {lengths['num-prompts']}",
            file=file,
            field=f"{at}.num-prompts",
        )
    if "baseline" in bp and not isinstance(bp["baseline"], dict):
        raise InputError("expected an object", file=file, field=f"{at}.baseline")


def _as_list(v: Any) -> list[Any]:
    return [] if v is None else list(v) if isinstance(v, list | tuple) else [v]
