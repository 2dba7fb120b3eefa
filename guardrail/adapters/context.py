"""The file being adapted: typed reads that name the JSON path, the run's time, and the one place where an
adapter's fields become a validated :class:`~guardrail.schema.Result`."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, overload

from pydantic import ValidationError

from guardrail.adapters.hardware import device_type_of
from guardrail.adapters.identity import digest
from guardrail.errors import InputError
from guardrail.schema import RESULT_SCHEMA, Result, Source, Status, check_document, first_error


@dataclass(frozen=True)
class AdaptDefaults:
    """What the file itself does not say; CLI flags (and the CI environment) fill it.

    Precedence, per field: a value the file states wins over these defaults (above all the commit: the
    file says which build produced the numbers). Defaults fill what the file leaves empty.
    """

    lane: str = "nightly"
    hardware: str | None = None  # e.g. "H100", "A3"; used when the file has none
    source: Source | None = None


_COMPACT = re.compile(r"^(\d{8})[-_](\d{6})$")
_NAME_TIME = re.compile(r"(\d{8})[-_](\d{6})(?=\D*$)")


class AdaptContext:
    """One file of one format, adapted with the given defaults; its errors name the file and the JSON path."""

    def __init__(self, path: Path, fmt: str, defaults: AdaptDefaults):
        self.path = path
        self.fmt = fmt
        self.defaults = defaults

    def error(self, msg: str, field: str | None = None) -> InputError:
        return InputError(msg, file=str(self.path), field=field)

    # --- typed reads --------------------------------------------------------------------------------

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

    @overload
    def num(self, value: Any, field: str, *, optional: Literal[True] = ...) -> float | None: ...
    @overload
    def num(self, value: Any, field: str, *, optional: Literal[False]) -> float: ...
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
        return [self.num(v, f"{field}[{i}]", optional=False) for i, v in enumerate(self.arr(value, field))]

    # --- time ---------------------------------------------------------------------------------------

    def time(self, value: Any, field: str) -> datetime:
        """`YYYYMMDD-HHMMSS` (vLLM-Omni, vllm bench) or ISO 8601. A time without a zone is taken as UTC: the
        tools that write these call `datetime.now()` on CI hosts that run in UTC (see docs/adapters.md)."""
        s = self.text(value, field)
        if not s:
            raise self.error("timestamp is missing", field)
        m = _COMPACT.match(s.strip())
        try:
            if m:
                dt = datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S")
            else:
                dt = datetime.fromisoformat(s.strip().replace("Z", "+00:00"))
        except ValueError:
            raise self.error(f"not a timestamp: {s!r} (expected YYYYMMDD-HHMMSS or ISO 8601)", field) from None
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)

    def started(self, value: Any, field: str, *, missing: str, missing_at: str | None = None) -> datetime:
        """The run's start: the file's timestamp when it has one, else the `YYYYMMDD-HHMMSS` /
        `YYYYMMDD_HHMMSS` suffix these tools put in file names (UTC assumed), else the error `missing`."""
        if value:
            return self.time(value, field)
        m = _NAME_TIME.search(self.path.stem)
        if m:
            try:
                return datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
            except ValueError:
                pass
        raise self.error(missing, missing_at or field)

    # --- the result ---------------------------------------------------------------------------------

    def source(self, file_source: Source | None = None) -> Source:
        """File values win; the defaults fill the gaps (field by field, CI info as a whole)."""
        stated = file_source or Source()
        d = self.defaults.source
        if d is None:
            return stated
        return Source(**{k: v if (v := getattr(stated, k)) is not None else getattr(d, k) for k in Source.model_fields})

    def result(
        self,
        where: str,
        *,
        started: datetime,
        source: Source,
        hardware: str,
        name: str,
        family: str | None,
        dims: dict[str, str],
        metrics: list[dict[str, Any]],
        extra: dict[str, Any],
        status: Status = "ok",
        error: dict[str, str] | None = None,
        device_type: str | None = None,
        device_count: int = 1,
        software: dict[str, str] | None = None,
        environment_extra: dict[str, Any] | None = None,
        spec: dict[str, Any] | None = None,
    ) -> Result:
        """Validate what an adapter read. The series is the digest of `dims`; `spec` (default: `dims`) is
        what the result shows of the workload. A failure here is the input's fault (e.g. a duplicate stage
        name), reported against the record `where` it came from."""
        doc = {
            "schema": RESULT_SCHEMA,
            "run": {"lane": self.defaults.lane, "started_at": started, "source": source},
            "environment": {
                "hardware": hardware,
                "device_type": device_type or device_type_of(hardware),
                "device_count": device_count,
                "software": software or {},
                "extra": environment_extra or {},
            },
            "workload": {
                "name": name,
                "family": family,
                "digest": digest(dims),
                "spec": dims if spec is None else spec,
            },
            "status": status,
            "error": error,
            "metrics": metrics,
            # The file's name only: the same file ingested from another directory is the same result.
            "extra": {"adapter": self.fmt, "source_file": self.path.name, **extra},
        }
        problem = check_document(doc)
        if problem is not None:
            raise self.error(f"cannot be stored as a result ({problem[0]}: {problem[1]})", where)
        try:
            return Result.model_validate(doc)
        except ValidationError as exc:
            path, msg = first_error(exc)
            loc = exc.errors(include_url=False)[0]["loc"]
            if len(loc) >= 2 and loc[0] == "metrics" and isinstance(loc[1], int) and loc[1] < len(metrics):
                # The result's path means little to the file's author; the metric is named after the file's key.
                msg = f"metric {metrics[loc[1]].get('name')!r}: {msg}"
            raise self.error(f"cannot be stored as a result ({path}: {msg})", where) from None


def summary_metric(name: str, unit: str, value: float, *, summary: str | None, higher: bool = False) -> dict[str, Any]:
    """One summary value from one run: one repeat holding one sample (DESIGN: a summary is a sample of the
    summary, never a raw observation)."""
    return {
        "name": name,
        "unit": unit,
        "direction": "higher_is_better" if higher else "lower_is_better",
        "repeats": [[value]],
        "summary": summary,
    }


def request_outcome(completed: float | None, failed: float | None) -> tuple[Status, dict[str, str] | None]:
    """A benchmark run's status from its request counts: it failed when no request completed or any failed."""
    done, lost = completed or 0, failed or 0
    if done <= 0:
        return "failed", {"kind": "no_completed_requests", "message": f"0 requests completed ({lost:g} failed)"}
    if lost > 0:
        return "failed", {"kind": "failed_requests", "message": f"{lost:g} of {done + lost:g} requests failed"}
    return "ok", None


def _kind(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number"
    )


def _short(v: Any) -> str:
    s = json.dumps(v) if not isinstance(v, str) else repr(v)
    return s if len(s) <= 40 else s[:37] + "..."
