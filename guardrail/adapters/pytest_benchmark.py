"""`pytest --benchmark-json` output (pytest-benchmark): one Result per entry of `benchmarks[]`.

The judged metric is `time` (seconds per call): the raw per-round times of `stats.data` when the run saved
them (`--benchmark-save-data`; one pytest process = one repeat), else `stats.mean` as a summary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from guardrail.adapters.context import AdaptContext, AdaptDefaults
from guardrail.schema import Result, Source

FORMAT = "pytest-benchmark"
STATS_KEPT = (
    "min",
    "max",
    "mean",
    "stddev",
    "median",
    "iqr",
    "q1",
    "q3",
    "rounds",
    "iterations",
    "ops",
    "outliers",
)


def detect(path: Path, data: Any) -> bool:
    return (
        isinstance(data, dict)
        and isinstance(data.get("benchmarks"), list)
        and ("machine_info" in data or "datetime" in data or "version" in data)
    )


def adapt(path: Path, data: Any, defaults: AdaptDefaults) -> list[Result]:
    ctx = AdaptContext(path, FORMAT, defaults)
    data = ctx.obj(data, "$")
    started = ctx.started(data.get("datetime"), "$.datetime", missing="required field is missing")
    hardware, device_type, hw_from = _hardware(data, defaults)
    commit_info = ctx.opt_obj(data.get("commit_info"), "$.commit_info")
    source = ctx.source(
        Source(
            commit=ctx.text(commit_info.get("id"), "$.commit_info.id") or None,
            branch=ctx.text(commit_info.get("branch"), "$.commit_info.branch") or None,
        )
    )
    machine = ctx.opt_obj(data.get("machine_info"), "$.machine_info")
    software = {
        k: str(v)
        for k, v in (("python", machine.get("python_version")), ("pytest-benchmark", data.get("version")))
        if v
    }
    out = []
    for i, raw in enumerate(ctx.arr(data["benchmarks"], "$.benchmarks")):
        at = f"$.benchmarks[{i}]"
        b = ctx.obj(raw, at)
        fullname = ctx.text(b.get("fullname") or b.get("name"), f"{at}.fullname")
        if not fullname:
            raise ctx.error("required field is missing", f"{at}.fullname")
        stats = ctx.obj(b.get("stats"), f"{at}.stats")
        if stats.get("data"):
            values = ctx.samples(stats["data"], f"{at}.stats.data")
            time_metric = {"name": "time", "unit": "s", "direction": "lower_is_better", "repeats": [values]}
        else:
            mean = ctx.num(stats.get("mean"), f"{at}.stats.mean", optional=False)
            time_metric = {
                "name": "time",
                "unit": "s",
                "direction": "lower_is_better",
                "repeats": [[mean]],
                "summary": "mean",
            }
        params = b.get("params")
        dims = {
            "fullname": fullname,
            "params": json.dumps(params, sort_keys=True, default=str) if params else "",
        }
        result = ctx.result(
            at,
            started=started,
            source=source,
            hardware=hardware,
            device_type=device_type,
            software=software,
            name=fullname,
            family=b.get("group") or None,
            dims=dims,
            spec={**dims, "group": b.get("group") or ""},
            metrics=[time_metric],
            extra={
                "hardware_from": hw_from,
                "stats": {k: stats[k] for k in STATS_KEPT if k in stats},
                **({"dirty": commit_info["dirty"]} if "dirty" in commit_info else {}),
                **({"extra_info": b["extra_info"]} if b.get("extra_info") else {}),
            },
        )
        out.append(result)
    return out


def _hardware(data: dict[str, Any], defaults: AdaptDefaults) -> tuple[str, str | None, str]:
    """(hardware, device type or None to tell it by the name, where the hardware came from)."""
    if defaults.hardware:
        return defaults.hardware, None, "defaults"
    machine = _dict(data.get("machine_info"))
    cpu = _dict(machine.get("cpu"))
    # pytest-benchmark times Python on the host CPU: the CPU model is the hardware it measured.
    name = cpu.get("brand_raw") or cpu.get("brand") or machine.get("processor") or machine.get("machine")
    if isinstance(name, str) and name.strip():
        return name.strip(), "cpu", "file"
    return "unknown", "cpu", "unknown"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
