"""The result file contract `guardrail.result/v1`: defined once here, validated at the boundary.

A result file is what a runner writes for one workload execution (DESIGN.md). Everything inside the
service trusts these models; everything outside goes through :func:`load_result` / :func:`parse_result`.
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator, model_validator

from guardrail.errors import InputError

RESULT_SCHEMA = "guardrail.result/v1"
VERDICTS_SCHEMA = "guardrail.verdicts/v1"

# A result file holds one workload execution; even a long video run with per-step samples is a few
# MB. Anything far past this is a mistake (a log, a tensor dump) and is refused before it is parsed.
MAX_RESULT_BYTES = int(os.environ.get("GUARDRAIL_MAX_RESULT_BYTES", 64 * 1024 * 1024))

Sample = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Status = Literal["ok", "failed", "infra_error", "timeout"]
Direction = Literal["lower_is_better", "higher_is_better"]


class _Model(BaseModel):
    # Unknown keys are refused so that a typo ("repeat" for "repeats") is an error, not silently lost.
    # Extensions go in the explicit free-form places: `spec`, `software`, `attributes`, `extra`.
    model_config = ConfigDict(extra="forbid", frozen=True)


class CIInfo(_Model):
    provider: str | None = None
    run_id: str | None = None
    attempt: int | None = Field(default=None, ge=1)
    url: str | None = None


class Source(_Model):
    repo: str | None = None
    commit: str | None = None
    branch: str | None = None
    pr: int | None = Field(default=None, ge=1)
    base_commit: str | None = None
    ci: CIInfo | None = None
    message: str | None = None  # commit subject, shown on the dashboard


class RunInfo(_Model):
    lane: str = Field(min_length=1)
    started_at: datetime
    source: Source = Source()

    @field_validator("started_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("timestamp needs a time zone (e.g. 2026-11-22T05:00:00Z)")
        return v


class Environment(_Model):
    hardware: str = Field(min_length=1)
    device_type: str = Field(min_length=1)
    device_count: int = Field(default=1, ge=1)
    software: dict[str, str | None] = {}
    extra: dict[str, Any] = {}


class Workload(_Model):
    name: str = Field(min_length=1)
    family: str | None = None
    digest: str = Field(min_length=1)
    spec: dict[str, Any] = {}


class Metric(_Model):
    name: str = Field(min_length=1)
    unit: str
    direction: Direction = "lower_is_better"
    # One list per fresh process (the unit of independence); inside it, one value per step/request.
    repeats: list[Annotated[list[Sample], Field(min_length=1)]] = Field(min_length=1)
    # Set when the values are already summaries (a mean, a p99) from a format that keeps no samples:
    # then each value is one sample of that summary, never a raw observation.
    summary: str | None = None


class ErrorInfo(_Model):
    kind: str = Field(min_length=1)
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


def _first_error(exc: ValidationError) -> tuple[str, str]:
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
    return json_path(loc), msg


def parse_result(data: bytes | str | Any, *, file: str = "<input>") -> Result:
    """Validate one result document (raw JSON or parsed). Raises InputError naming the file and JSON path."""
    if isinstance(data, bytes | str):
        try:
            # NaN/Infinity literals parse here so that validation can name the sample's path.
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"not valid JSON ({exc})", file=file) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object at the top level", file=file, field="$")
    if "schema" not in data:
        raise InputError("required field is missing", file=file, field="$.schema")
    try:
        return Result.model_validate(data)
    except ValidationError as exc:
        path, msg = _first_error(exc)
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
