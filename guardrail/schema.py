"""The result file contract `guardrail.result/v1`: defined once here, validated at the boundary.

A result file is what a runner writes for one workload execution (DESIGN.md). Everything inside the
service trusts these models; everything outside goes through :func:`load_result` / :func:`parse_result`.
"""

from __future__ import annotations

import json
import math
import os
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from guardrail.errors import InputError

RESULT_SCHEMA = "guardrail.result/v1"
VERDICTS_SCHEMA = "guardrail.verdicts/v1"

# A result file holds one workload execution; even a long video run with per-step samples is a few
# MB. Anything far past this is a mistake (a log, a tensor dump) and is refused before it is parsed.
MAX_RESULT_BYTES = int(os.environ.get("GUARDRAIL_MAX_RESULT_BYTES", 64 * 1024 * 1024))

Sample = Annotated[float, Strict(), Field(allow_inf_nan=False)]
# Integers the store keeps in a 32-bit column; 10**30 is bad input here, not an overflow in the database.
Int32 = Annotated[int, Strict(), Field(le=2**31 - 1)]
# How deep a result document may nest: far past any honest `spec`/`extra`, well short of Python's recursion
# limit, so a 100k-deep array is one line of bad input rather than a RecursionError.
MAX_DEPTH = 64
# Dates the analysis can do arithmetic on: year 1 or 9999 with an offset overflows on conversion to UTC.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)


def _control_chars(v: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in v)


def _no_control(v: str | None) -> str | None:
    if v is not None and _control_chars(v):
        raise ValueError("contains a control character (a name must be printable text)")
    return v


# Names stored in a column of N characters (guardrail/store/models.py), printable text only.
Str20 = Annotated[str, Field(max_length=20), AfterValidator(_no_control)]
Str50 = Annotated[str, Field(max_length=50), AfterValidator(_no_control)]
Str64 = Annotated[str, Field(max_length=64), AfterValidator(_no_control)]
Str100 = Annotated[str, Field(max_length=100), AfterValidator(_no_control)]
Str200 = Annotated[str, Field(max_length=200), AfterValidator(_no_control)]
Str300 = Annotated[str, Field(max_length=300), AfterValidator(_no_control)]
Str2000 = Annotated[str, Field(max_length=2000), AfterValidator(_no_control)]


# Units by what they measure: a latency or duration and a throughput are positive, a memory size is
# non-negative; other units (ratios, counts, scores) are only required to be finite.
TIME_UNITS = frozenset({"ns", "us", "µs", "μs", "ms", "s", "sec", "min", "h"})
MEMORY_UNITS = frozenset({"B", "byte", "bytes", "KB", "kB", "KiB", "MB", "MiB", "GB", "GiB", "TB", "TiB"})


def unit_kind(unit: str) -> Literal["time", "memory", "rate", "other"]:
    if unit in TIME_UNITS:
        return "time"
    if unit in MEMORY_UNITS:
        return "memory"
    if unit.endswith(("/s", "/sec", "/min", "/h")) or unit in ("fps", "it/s", "Hz"):
        return "rate"
    return "other"


Status = Literal["ok", "failed", "infra_error", "timeout"]
Direction = Literal["lower_is_better", "higher_is_better"]


class _Model(BaseModel):
    # Unknown keys are refused so that a typo ("repeat" for "repeats") is an error, not silently lost.
    # Extensions go in the explicit free-form places: `spec`, `software`, `attributes`, `extra`.
    model_config = ConfigDict(extra="forbid", frozen=True)


class CIInfo(_Model):
    provider: Str50 | None = None
    run_id: Str100 | None = None
    attempt: Int32 | None = Field(default=None, ge=1)
    url: Str2000 | None = None
    queue: Str100 | None = None  # the agent queue (Buildkite) or runner group the job ran on


class Source(_Model):
    repo: Str200 | None = None
    commit: Str64 | None = None
    branch: Str200 | None = None
    pr: Int32 | None = Field(default=None, ge=1)
    base_commit: Str64 | None = None
    ci: CIInfo | None = None
    message: str | None = None  # commit subject, shown on the dashboard


class RunInfo(_Model):
    lane: Str50 = Field(min_length=1)
    started_at: datetime
    source: Source = Source()

    @field_validator("started_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("timestamp needs a time zone (e.g. 2026-11-22T05:00:00Z)")
        try:
            utc = v.astimezone(UTC)
        except OverflowError:
            utc = datetime.min.replace(tzinfo=UTC)
        if not EARLIEST <= utc < LATEST:
            raise ValueError(f"timestamp {v.isoformat()} is outside {EARLIEST.year}..{LATEST.year - 1}")
        return v


class Environment(_Model):
    hardware: Str200 = Field(min_length=1)
    device_type: Str20 = Field(min_length=1)
    device_count: Int32 = Field(default=1, ge=1)
    software: dict[str, str | None] = {}
    extra: dict[str, Any] = {}


class Workload(_Model):
    name: Str300 = Field(min_length=1)
    family: Str100 | None = None
    digest: Str200 = Field(min_length=1)
    spec: dict[str, Any] = {}


class Metric(_Model):
    name: Str200 = Field(min_length=1)
    unit: Str50
    direction: Direction = "lower_is_better"
    # One list per fresh process (the unit of independence); inside it, one value per step/request.
    repeats: list[Annotated[list[Sample], Field(min_length=1)]] = Field(min_length=1)
    # Set when the values are already summaries (a mean, a p99) from a format that keeps no samples:
    # then each value is one sample of that summary, never a raw observation.
    summary: Str50 | None = None
    # A metric whose zero is a measurement (a count of retries, an idle time): without this, a zero
    # latency, duration or throughput is refused as impossible. Optional, so v1 files stay valid.
    may_be_zero: bool = False

    @model_validator(mode="after")
    def _possible(self) -> Metric:
        kind = unit_kind(self.unit)
        if kind == "other":
            return self
        for i, rep in enumerate(self.repeats):
            for j, x in enumerate(rep):
                bad = x < 0 or (x == 0 and kind != "memory" and not self.may_be_zero)
                if bad:
                    what = {"time": "a latency or duration", "memory": "a memory size", "rate": "a throughput"}[kind]
                    need = "non-negative" if kind == "memory" or self.may_be_zero else "positive"
                    hint = "" if need == "non-negative" else ' (set "may_be_zero": true if zero is a real value)'
                    raise ValueError(f"at .repeats[{i}][{j}]: {x:g} {self.unit}: {what} must be {need}{hint}")
        return self


class ErrorInfo(_Model):
    kind: Str100 = Field(min_length=1)
    message: str = ""


class Result(_Model):
    schema_: Literal["guardrail.result/v1"] = Field(alias="schema")
    run: RunInfo
    environment: Environment
    workload: Workload
    status: Status
    error: ErrorInfo | None = None
    metrics: list[Metric] = []
    # Free-form, recorded but not judged: output fingerprint, stage breakdown details, warm-up samples,
    # applied optimisations, adapter provenance.
    extra: dict[str, Any] = {}

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _consistent(self) -> Result:
        if self.status != "ok" and self.error is None:
            raise ValueError(f"status is {self.status!r} but there is no 'error' object saying why")
        seen: set[str] = set()
        for m in self.metrics:
            if m.name in seen:
                raise ValueError(f"metric {m.name!r} appears twice")
            seen.add(m.name)
        return self

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=False, indent=1)

    def metric(self, name: str) -> Metric | None:
        return next((m for m in self.metrics if m.name == name), None)


def json_path(loc: tuple[str | int, ...]) -> str:
    """('metrics', 0, 'repeats', 1, 2) -> '$.metrics[0].repeats[1][2]'."""
    out = "$"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{'schema' if part == 'schema_' else part}"
    return out


def first_error(exc: ValidationError) -> tuple[str, str]:
    """(JSON path, one-line message) of a validation error's first problem."""
    err = exc.errors(include_url=False)[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    msg = err["msg"]
    if err["type"] == "finite_number":
        msg = "sample is NaN or infinite"
    elif err["type"] in ("float_type", "float_parsing"):
        msg = f"sample must be a number, got {err.get('input')!r}"
    elif err["type"] == "literal_error" and loc in (("schema",), ("schema_",)):
        msg = f"unknown schema version {err.get('input')!r}; this guardrail reads {RESULT_SCHEMA!r}"
    elif err["type"] == "missing":
        msg = "required field is missing"
    elif err["type"] == "extra_forbidden":
        msg = "unknown field"
    elif msg.startswith("Value error, "):
        msg = msg.removeprefix("Value error, ")
    path = json_path(loc)
    if msg.startswith("at ."):  # a model's check naming a place inside it: '$.metrics[0]' + '.repeats[0][1]'
        where, msg = msg.removeprefix("at ").split(": ", 1)
        path += where
    return path, msg


def check_document(data: Any) -> tuple[str, str] | None:
    """(JSON path, problem) of the first thing no store can keep, anywhere in a parsed document: nesting past
    MAX_DEPTH, a NUL character (PostgreSQL text and jsonb refuse it), an integer beyond 64 bits. None if clean.

    Iterative, so a deeply nested document is reported, not a RecursionError."""
    stack: list[tuple[Any, str, int]] = [(data, "$", 0)]
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            return path, f"nested more than {MAX_DEPTH} levels deep"
        if isinstance(node, str):
            if "\x00" in node:
                return path, "contains a NUL character"
        elif isinstance(node, bool):
            continue
        elif isinstance(node, int):
            if not -(2**63) <= node < 2**63:
                return path, f"integer {str(node)[:20]}{'...' if len(str(node)) > 20 else ''} is out of range"
        elif isinstance(node, float):
            continue
        elif isinstance(node, dict):
            for k, v in reversed(list(node.items())):
                if "\x00" in str(k):
                    return path, "a key contains a NUL character"
                stack.append((v, f"{path}.{k}", depth + 1))
        elif isinstance(node, list):
            for i in range(len(node) - 1, -1, -1):
                stack.append((node[i], f"{path}[{i}]", depth + 1))
    return None


def loads(data: bytes | str, *, file: str) -> Any:
    """json.loads with every failure as InputError: bad JSON, bad UTF-8, nesting too deep for the parser."""
    try:
        # NaN/Infinity literals parse here so that validation can name the sample's path.
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc})", file=file) from None
    except RecursionError:
        raise InputError(f"nested too deeply (more than {MAX_DEPTH} levels)", file=file, field="$") from None


def parse_result(data: bytes | str | Any, *, file: str = "<input>") -> Result:
    """Validate one result document (raw JSON or parsed). Raises InputError naming the file and JSON path."""
    if isinstance(data, bytes | str):
        data = loads(data, file=file)
    if not isinstance(data, dict):
        raise InputError("expected a JSON object at the top level", file=file, field="$")
    problem = check_document(data)
    if problem is not None:
        raise InputError(problem[1], file=file, field=problem[0])
    if "schema" not in data:
        raise InputError("required field is missing", file=file, field="$.schema")
    try:
        return Result.model_validate(data)
    except ValidationError as exc:
        path, msg = first_error(exc)
        raise InputError(msg, file=file, field=path) from None


def load_result(path: str | Path) -> Result:
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", file=str(p)) from None
    if size > MAX_RESULT_BYTES:
        raise InputError(
            f"file is {size / 2**20:.0f} MiB, over the {MAX_RESULT_BYTES / 2**20:.0f} MiB limit for one result",
            file=str(p),
        )
    return parse_result(p.read_bytes(), file=str(p))


def result_json_schema() -> dict[str, Any]:
    """The JSON Schema of `guardrail.result/v1`, generated from the models (docs/result-schema.json)."""
    schema = Result.model_json_schema(by_alias=True)
    schema["$id"] = "https://perf-guardrail.dev/schemas/guardrail.result.v1.json"
    schema["title"] = RESULT_SCHEMA
    return schema


def is_finite(x: float) -> bool:
    return not (math.isnan(x) or math.isinf(x))
