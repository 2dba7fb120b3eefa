"""Pieces every adapter needs: typed reads that name the JSON path, hardware/time/digest helpers, and one
place where an adapter's dict becomes a validated :class:`~guardrail.schema.Result`."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from guardrail.errors import InputError
from guardrail.schema import RESULT_SCHEMA, CIInfo, Result, Source, json_path


@dataclass(frozen=True)
class AdaptDefaults:
    """What the file itself does not say; CLI flags (and the CI environment) fill it.

    Precedence, per field: a value the file states wins over these defaults (above all the commit: the
    file says which build produced the numbers). Defaults fill what the file leaves empty.
    """

    lane: str = "nightly"
    hardware: str | None = None  # e.g. "H100", "A3"; used when the file has none
    source: Source | None = None


class Ctx:
    """The file being adapted; builds InputErrors that name it and the JSON path."""

    def __init__(self, path: Path, fmt: str):
        self.path = path
        self.file = str(path)
        self.fmt = fmt

    def error(self, msg: str, field: str | None = None) -> InputError:
        return InputError(msg, file=self.file, field=field)

    def obj(self, value: Any, field: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(f"expected a JSON object, got {_kind(value)}", field)
        return value

    def opt_obj(self, value: Any, field: str) -> dict[str, Any]:
        """An object, or {} when absent/null (an empty array or a string is still an error)."""
        return {} if value is None else self.obj(value, field)

    def arr(self, value: Any, field: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.error(f"expected a JSON array, got {_kind(value)}", field)
        return value

    def num(self, value: Any, field: str, *, optional: bool = True) -> float | None:
        """A finite number, or None when absent/null (unless required). Bools are not numbers here."""
        if value is None:
            if optional:
                return None
            raise self.error("required number is missing", field)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(f"expected a number, got {_kind(value)} {_short(value)}", field)
        f = float(value)
        if math.isnan(f) or math.isinf(f):
            raise self.error("number is NaN or infinite", field)
        return f

    def text(self, value: Any, field: str) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise self.error(f"expected a string, got {_kind(value)}", field)

    def samples(self, value: Any, field: str) -> list[float]:
        out: list[float] = []
        for i, v in enumerate(self.arr(value, field)):
            out.append(self.num(v, f"{field}[{i}]", optional=False))  # type: ignore[arg-type]
        return out


def _kind(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number"
    )


def _short(v: Any) -> str:
    s = json.dumps(v) if not isinstance(v, str) else repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


# --- time -----------------------------------------------------------------------------------------------

_COMPACT = re.compile(r"^(\d{8})[-_](\d{6})$")


def parse_time(ctx: Ctx, value: Any, field: str) -> datetime:
    """`YYYYMMDD-HHMMSS` (vLLM-Omni, vllm bench) or ISO 8601. A time without a zone is taken as UTC: the
    tools that write these call `datetime.now()` on CI hosts that run in UTC (see docs/adapters.md)."""
    s = ctx.text(value, field)
    if not s:
        raise ctx.error("timestamp is missing", field)
    m = _COMPACT.match(s.strip())
    try:
        if m:
            dt = datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S")
        else:
            dt = datetime.fromisoformat(s.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ctx.error(f"not a timestamp: {s!r} (expected YYYYMMDD-HHMMSS or ISO 8601)", field) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


_NAME_TIME = re.compile(r"(\d{8})[-_](\d{6})(?=\D*$)")


def time_from_name(path: Path) -> datetime | None:
    """The `YYYYMMDD-HHMMSS` / `YYYYMMDD_HHMMSS` suffix that these tools put in file names (UTC assumed)."""
    m = _NAME_TIME.search(path.stem)
    if not m:
        return None
    try:
        return datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


# --- hardware ------------------------------------------------------------------------------------------

# Device names as vLLM-Omni's runners label them (H100, H20, L40S, A100, MI300, 910B4, A2, A3, ...). NPU is
# tried first: "A2"/"A3" are Ascend boxes, while "A10"/"A100" are NVIDIA parts.
_NPU = re.compile(r"^(ascend.*|atlas.*|huawei.*|a[23]|910.*|310.*|npu.*)$", re.I)
_CUDA = re.compile(r"^(nvidia.*|[ahlv]\d{1,3}[a-z]*|h\d{2,3}[a-z]*|b[12]\d\d[a-z]*|gb\d+.*|rtx.*|cuda.*)$", re.I)
_ROCM = re.compile(r"^(amd.*|mi\d+.*|rocm.*)$", re.I)
_XPU = re.compile(r"^(intel.*(arc|gpu|max).*|b[5-7]\d|xpu.*)$", re.I)


def normalize_hardware(raw: str) -> str:
    """`h200` -> `H200`: vLLM-Omni's local files spell accelerator models in lower case, its test cases and
    reports in upper case; one spelling keeps them one series. Names with spaces/dashes are kept as given."""
    raw = raw.strip()
    return raw.upper() if re.fullmatch(r"[a-zA-Z]{1,2}\d{1,4}[a-zA-Z]?", raw) else raw


def device_type_of(hardware: str) -> str:
    if _NPU.match(hardware):
        return "npu"
    if _CUDA.match(hardware):
        return "cuda"
    if _ROCM.match(hardware):
        return "rocm"
    if _XPU.match(hardware):
        return "xpu"
    if hardware.lower() == "cpu" or any(w in hardware.lower() for w in ("intel", "xeon", "epyc", "ryzen", "arm")):
        return "cpu"
    return "unknown"


# --- identity -------------------------------------------------------------------------------------------


def digest(dims: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of the series dimensions (sorted keys, no spaces)."""
    canonical = json.dumps(dims, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def merge_source(file_source: Source, defaults: AdaptDefaults) -> Source:
    """File values win; defaults fill the gaps (field by field, CI info as a whole)."""
    d = defaults.source
    if d is None:
        return file_source
    merged = {
        k: getattr(file_source, k) if getattr(file_source, k) is not None else getattr(d, k)
        for k in Source.model_fields
    }
    return Source(**merged)


def buildkite_ci(build_url: str | None, build_id: str | None = None) -> CIInfo | None:
    """`https://buildkite.com/<org>/<pipeline>/builds/<N>` -> provider buildkite, run_id N."""
    if not build_url:
        return None
    m = re.search(r"buildkite\.com/[^/]+/[^/]+/builds/(\d+)", build_url)
    return CIInfo(provider="buildkite", run_id=m.group(1) if m else (build_id or None), url=build_url)


# --- building the result --------------------------------------------------------------------------------


def metric(name: str, unit: str, value: float, *, summary: str | None, higher: bool = False) -> dict[str, Any]:
    """One summary value from one run: one repeat holding one sample (DESIGN: a summary is a sample of the
    summary, never a raw observation)."""
    return {
        "name": name,
        "unit": unit,
        "direction": "higher_is_better" if higher else "lower_is_better",
        "repeats": [[value]],
        "summary": summary,
    }


def build_result(ctx: Ctx, doc: dict[str, Any], where: str) -> Result:
    """Validate what an adapter produced. A failure here is the input's fault (e.g. a duplicate stage name),
    reported against the record it came from."""
    doc = {"schema": RESULT_SCHEMA, **doc}
    try:
        return Result.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"].removeprefix("Value error, ")
        raise ctx.error(f"cannot be stored as a result ({json_path(loc)}: {msg})", where) from None
