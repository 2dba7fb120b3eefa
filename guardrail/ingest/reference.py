"""Reference baselines for cold start: the per-config `baseline` blocks of vLLM-Omni's perf test cases.

vLLM-Omni's test cases (`tests/dfx/perf/tests/*.json`) carry, per benchmark config, the values its own CI
asserts against: flat (`{"latency_mean": 27.6}`), per hardware (`{"H100": {...}, "A3": {...}}`), or per
sweep step (a list indexed like `max-concurrency`, or a dict keyed by it). This module turns them into
:class:`ReferenceBaseline` rows keyed the way the adapters key series, and writes/reads them as YAML under
`baselines/reference/` (one file per test case). It runs no command and touches no database.

What can be read:
* a test-case JSON (a list of `{test_name, server_params, benchmark_params: [...]}`), diffusion or TTS;
* a `diffusion_result_*.json` (its records' `benchmark_params.baseline`), when the repo is unreachable;
* a TTS CI `result_*.json` (its top-level `baseline`).

Matching a series: same workload name, the reference's hardware equal to the result's (a reference
without hardware matches none: fail closed), and every reference dim equal to the result's
`workload.spec` entry (:func:`matches`). References derived from a test case carry only the dims the
config determines; `Attn_backend` comes from the CI environment (`DIFFUSION_ATTENTION_BACKEND`), so it is
left out unless the config sets `diffusion-attention-backend`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from guardrail.errors import InputError
from guardrail.ingest.adapters import vllm_omni_diffusion as diffusion
from guardrail.ingest.adapters._common import normalize_hardware
from guardrail.schema import Result

SCHEMA = "guardrail.reference-baselines/v1"
_HW_KEY = re.compile(r"^([A-Za-z]{1,3}\d{1,4}[A-Za-z]*|Ascend[\w-]*|NVIDIA[\w-]*|AMD[\w-]*|MI\d+\w*|cpu)$")
_TTS_RESULT = re.compile(r"^result_(.+?)_\d{8}-\d{6}$")


@dataclass(frozen=True)
class ReferenceBaseline:
    workload: str  # as the adapter names the workload: `test_name/benchmark` or the TTS test case
    metric: str
    hardware: str | None  # None: the block names no hardware and the test case pins none
    value: float
    unit: str
    direction: str
    source: str  # the file the value was read from (repo path or local path)
    dims: dict[str, str] = field(default_factory=dict)  # series dims (subset of workload.spec)
    test_name: str = ""  # the test case it came from (one YAML file each)

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "metric": self.metric,
            "hardware": self.hardware,
            "value": self.value,
            "unit": self.unit,
            "direction": self.direction,
            "dims": dict(self.dims),
        }


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


# --- reading sources -----------------------------------------------------------------------------------


def load_reference_baselines(
    path: str | Path, *, source: str | None = None, default_hardware: str | None = None
) -> list[ReferenceBaseline]:
    """Every reference value in one file. `source` names it in the output (e.g. its path in the repo).

    A flat block (no per-hardware keys) belongs to the one hardware the test case's marks pin; when the
    marks pin none or several, to `default_hardware` (None: the row has no hardware and matches nothing).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_bytes())
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", file=str(p)) from None
    except ValueError as exc:
        raise InputError(f"not valid JSON ({exc})", file=str(p)) from None
    src = source or str(p)
    if isinstance(data, dict):
        return _from_tts_result(p, data, src)
    if not isinstance(data, list):
        raise InputError("expected a JSON array of test cases or result records", file=str(p), field="$")
    out: list[ReferenceBaseline] = []
    for i, case in enumerate(data):
        at = f"$[{i}]"
        if not isinstance(case, dict):
            raise InputError("expected a JSON object", file=str(p), field=at)
        if isinstance(case.get("benchmark_params"), list):
            out.extend(_from_test_case(p, case, at, src, default_hardware))
        elif "result" in case or isinstance(case.get("benchmark_params"), dict):
            out.extend(_from_result_record(p, case, at, src))
        else:
            raise InputError("neither a test case (benchmark_params list) nor a result record", file=str(p), field=at)
    return out


def config_dims(
    test_name: str, model: str | None, serve_args: dict[str, Any], bp: dict[str, Any], max_concurrency: Any
) -> dict[str, str]:
    """The dims a diffusion config determines, derived the way vLLM-Omni's writer derives its report
    columns (resolution, Parallelism, Cache, compile, Quantization, offload)."""
    width, height = bp.get("width", "unknown width"), bp.get("height", "unknown height")
    keys = (
        "num-gpus",
        "usp",
        "ulysses-degree",
        "ring",
        "ring-degree",
        "cfg-parallel-size",
        "vae-patch-parallel-size",
        "vae-use-tiling",
        "tensor-parallel-size",
    )
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
    if isinstance(raw, dict):
        return raw.get(str(flow), raw.get(flow)) if flow is not None else None
    return raw


def _as_list(v: Any) -> list[Any]:
    return [] if v is None else list(v) if isinstance(v, list | tuple) else [v]


def _rows(
    block: dict[str, Any],
    index: int,
    flow: Any,
    *,
    workload: str,
    hardware: str | None,
    dims: dict[str, str],
    src: str,
    test_name: str,
) -> list[ReferenceBaseline]:
    out = []
    for metric, raw in block.items():
        v = _step_value(raw, index, flow)
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        unit, direction = metric_unit(metric)
        out.append(ReferenceBaseline(workload, metric, hardware, float(v), unit, direction, src, dict(dims), test_name))
    return out


def _from_test_case(
    p: Path, case: dict[str, Any], at: str, src: str, default_hardware: str | None
) -> list[ReferenceBaseline]:
    test_name = case.get("test_name")
    if not isinstance(test_name, str) or not test_name:
        raise InputError("required field is missing", file=str(p), field=f"{at}.test_name")
    sp = case.get("server_params") if isinstance(case.get("server_params"), dict) else {}
    serve_args = sp.get("serve_args") if isinstance(sp.get("serve_args"), dict) else {}
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
        if "name" in bp:  # diffusion config: one workload per max-concurrency step
            flows = _as_list(bp.get("max-concurrency")) or [None]
            for k, flow in enumerate(flows):
                dims = config_dims(test_name, sp.get("model"), serve_args, bp, flow)
                name = diffusion.workload_name(test_name, bp.get("name"))
                for hw, block in _split_hardware(baseline, pinned):
                    out.extend(
                        _rows(
                            block,
                            k,
                            flow,
                            workload=name,
                            hardware=hw,
                            dims=dims,
                            src=src,
                            test_name=test_name,
                        )
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
                for hw, block in _split_hardware(baseline, pinned):
                    out.extend(
                        _rows(
                            block,
                            k,
                            flow,
                            workload=case_name,
                            hardware=hw,
                            dims={"test_case": case_name},
                            src=src,
                            test_name=test_name,
                        )
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
    bp = rec.get("benchmark_params") if isinstance(rec.get("benchmark_params"), dict) else {}
    baseline = rec.get("baseline") if isinstance(rec.get("baseline"), dict) else bp.get("baseline")
    if not isinstance(baseline, dict) or not baseline:
        return []
    test_name = str(rec.get("test_name") or "")
    columns = {k: rec.get(k) for k in diffusion.DIMS}
    dims = diffusion.series_dims(test_name, bp.get("name"), columns)
    hw_raw = str(rec.get("Hardware") or "").strip()
    if hw_raw:
        hardware: str | None = normalize_hardware(hw_raw)
    elif re.search(r"buildkite\.com/vllm/vllm-omni/builds/", str(rec.get("build_url") or "")):
        hardware = diffusion.BUILDKITE_HARDWARE
    else:
        hardware = None
    name = diffusion.workload_name(test_name, bp.get("name"))
    out: list[ReferenceBaseline] = []
    for hw, block in _split_hardware(baseline, [hardware] if hardware else []):
        out.extend(_rows(block, 0, None, workload=name, hardware=hw, dims=dims, src=src, test_name=test_name))
    return out


def _from_tts_result(p: Path, data: dict[str, Any], src: str) -> list[ReferenceBaseline]:
    baseline = data.get("baseline")
    m = _TTS_RESULT.match(p.stem)
    if not isinstance(baseline, dict) or not m:
        raise InputError("not a vLLM-Omni CI result_*.json with a baseline block", file=str(p), field="$.baseline")
    case = m.group(1)
    out: list[ReferenceBaseline] = []
    for hw, block in _split_hardware(baseline, []):
        out.extend(_rows(block, 0, None, workload=case, hardware=hw, dims={"test_case": case}, src=src, test_name=case))
    return out


# --- YAML ----------------------------------------------------------------------------------------------


def _test_case_of(ref: ReferenceBaseline) -> str:
    return ref.test_name or ref.dims.get("test_name") or ref.workload.split("/", 1)[0]


def write_reference_yaml(
    baselines: Iterable[ReferenceBaseline],
    out_dir: str | Path,
    *,
    repo: str | None = None,
    commit: str | None = None,
    note: str | None = None,
) -> list[Path]:
    """One YAML file per test case under `out_dir`, each opening with a comment that cites its source
    (path in `repo` at `commit`). Deduplicates identical rows; returns the files written, sorted."""
    groups: dict[str, list[ReferenceBaseline]] = {}
    for ref in baselines:
        groups.setdefault(_test_case_of(ref), []).append(ref)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for case, refs in sorted(groups.items()):
        rows: list[dict[str, Any]] = []
        for r in refs:
            d = r.to_dict()
            if d not in rows:
                rows.append(d)
        sources = sorted({r.source for r in refs})
        header = [
            f"# Reference baselines for vLLM-Omni perf test case {case}.",
            *[f"# Source: {repo + ': ' if repo else ''}{s}{' @ ' + commit if commit else ''}" for s in sources],
        ]
        if note:
            header.append(f"# {note}")
        header.append("# Generated by guardrail.ingest.reference.write_reference_yaml; re-import, don't hand-edit.")
        doc = {
            "schema": SCHEMA,
            "test_case": case,
            "source": {"repo": repo, "commit": commit, "paths": sources},
            "baselines": rows,
        }
        path = out / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', case)}.yaml"
        path.write_text("\n".join(header) + "\n" + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        written.append(path)
    return written


def load_reference_yaml(paths: str | Path | Sequence[str | Path]) -> list[ReferenceBaseline]:
    """Read YAML files written by :func:`write_reference_yaml` (a file, a directory, or a list)."""
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    files: list[Path] = []
    for item in items:
        p = Path(item)
        files.extend(sorted(p.glob("*.yaml")) if p.is_dir() else [p])
    out: list[ReferenceBaseline] = []
    for f in files:
        try:
            # The C loader when libyaml is there: the pure-Python one takes seconds for the whole folder.
            doc = yaml.load(f.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"cannot read reference baselines ({exc})", file=str(f)) from None
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise InputError(f"expected schema {SCHEMA!r}", file=str(f), field="$.schema")
        paths_ = (doc.get("source") or {}).get("paths") or [str(f)]
        for i, row in enumerate(doc.get("baselines") or []):
            try:
                out.append(
                    ReferenceBaseline(
                        workload=str(row["workload"]),
                        metric=str(row["metric"]),
                        hardware=None if row.get("hardware") is None else str(row["hardware"]),
                        value=float(row["value"]),
                        unit=str(row.get("unit") or ""),
                        direction=str(row.get("direction") or "lower_is_better"),
                        source=str(paths_[0]),
                        dims={str(k): str(v) for k, v in (row.get("dims") or {}).items()},
                        test_name=str(row.get("test_name") or doc.get("test_case") or ""),
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(f"bad reference row ({exc})", file=str(f), field=f"$.baselines[{i}]") from None
    return out


def matches(ref: ReferenceBaseline, result: Result) -> bool:
    """Does this reference value apply to this result's series (see the module docstring)?"""
    if ref.hardware is None or ref.hardware != result.environment.hardware:
        return False
    if ref.workload != result.workload.name:
        return False
    spec = result.workload.spec
    return all(str(spec.get(k, "")) == v for k, v in ref.dims.items())


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
        fresh = [r for r in refs if _test_case_of(r) not in taken]
        taken |= {_test_case_of(r) for r in fresh}
        by_case: dict[str, list[ReferenceBaseline]] = {}
        for r in fresh:
            by_case.setdefault(_test_case_of(r), []).append(r)
        for refs_of_case in by_case.values():
            written += write_reference_yaml(refs_of_case, out_dir, repo=repo, commit=commit)
    return sorted(set(written))
