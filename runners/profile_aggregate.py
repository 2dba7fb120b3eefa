"""A profile's compact aggregates (`guardrail.profile/v1`, stored in a result's `extra.profile`): per op the self
time in each counted step and its calls per step, per transformer block and per pipeline stage the same, and the
median of each over the counted steps (what guardrail.analysis.profile_diff compares: a median is robust to one
noisy step).

Times are self device time (CUDA kernels launched by the op itself) on CUDA and NPU, self CPU time on CPU
(`time_basis` says which). The events arrive as plain tuples (:class:`Span`), so the arithmetic is tested on
numbers alone; :func:`from_torch_events` and :func:`from_npu_kernels` turn the profilers' outputs into them.
"""

from __future__ import annotations

import bisect
import csv
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROFILE_SCHEMA = "guardrail.profile/v1"
STEP = "guardrail/step#"
STAGE = "guardrail/stage/"
BLOCK = "guardrail/block/"
MAX_OPS = 120  # ops kept by name; the rest are summed into OTHER (a result stays small)
MAX_MODULES = 200
OTHER = "(other ops)"
# CUPTI's overhead records (Kineto names them by kind) arrive beside the ops with a "device" duration that is the
# host waiting on a full launch queue or on the profiler's own buffers, not work on the device: on a 2.4 s Wan2.2
# step at full size "Command Buffer Full" read 1.9-2.2 s per step and swamped every real change (H200, 2026-12-02).
PROFILER_OVERHEAD = frozenset(
    {"Command Buffer Full", "Activity Buffer Request", "Buffer Flush", "Instrumentation", "Resource"}
)


@dataclass(frozen=True)
class Span:
    """One profiler event: an op (self time in µs) or one of our ranges (a `guardrail/...` name)."""

    name: str
    start_us: float
    end_us: float
    self_us: float = 0.0
    thread: int = 0


def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else 0.0


def _r(x: float) -> float:
    return round(x, 4)


def _by_cost(row: dict[str, Any]) -> tuple[float, str]:
    return (-float(row["ms_per_step"]), str(row["name"]))


def aggregate(spans: Iterable[Span], counted: Sequence[int], *, time_basis: str) -> dict[str, Any]:
    """Spans -> aggregates over the counted steps (step indices as the ranges name them)."""
    ranges: list[Span] = []
    ops: list[Span] = []
    for s in spans:
        if s.name in PROFILER_OVERHEAD:
            continue
        (ranges if s.name.startswith("guardrail/") else ops).append(s)
    steps = {int(s.name[len(STEP) :]): s for s in ranges if s.name.startswith(STEP)}
    want = [i for i in counted if i in steps]
    ops.sort(key=lambda s: s.start_us)
    starts = [s.start_us for s in ops]

    def inside(r: Span) -> list[Span]:
        lo = bisect.bisect_left(starts, r.start_us)
        hi = bisect.bisect_right(starts, r.end_us)
        return [o for o in ops[lo:hi] if o.end_us <= r.end_us and o.thread == r.thread]

    # per op: step -> (self µs, calls)
    per_op: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    step_total: dict[int, float] = {}
    for i in want:
        total = 0.0
        for o in inside(steps[i]):
            cell = per_op[o.name][i]
            cell[0] += o.self_us
            cell[1] += 1
            total += o.self_us
        step_total[i] = total
    per_block: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    for r in ranges:
        if not r.name.startswith(BLOCK):
            continue
        step = next((i for i in want if steps[i].start_us <= r.start_us and r.end_us <= steps[i].end_us), None)
        if step is None:
            continue
        cell = per_block[r.name[len(BLOCK) :]][step]
        cell[0] += sum(o.self_us for o in inside(r))
        cell[1] += 1
    stages: dict[str, float] = defaultdict(float)
    for r in ranges:
        if r.name.startswith(STAGE):
            stages[r.name[len(STAGE) :]] += sum(o.self_us for o in inside(r)) / 1000.0

    def rows(table: dict[str, dict[int, list[float]]]) -> list[dict[str, Any]]:
        out = []
        for name, by_step in table.items():
            ms = [by_step[i][0] / 1000.0 if i in by_step else 0.0 for i in want]
            calls = [by_step[i][1] if i in by_step else 0.0 for i in want]
            out.append(
                {
                    "name": name,
                    "ms_per_step": _r(_median(ms)),
                    "calls_per_step": _median(calls),
                    "steps_ms": [_r(x) for x in ms],
                }
            )
        out.sort(key=_by_cost)
        return out

    op_rows = rows(per_op)
    kept, rest = op_rows[:MAX_OPS], op_rows[MAX_OPS:]
    if rest:
        other = [sum(r["steps_ms"][k] for r in rest) for k in range(len(want))]
        kept.append(
            {
                "name": OTHER,
                "ms_per_step": _r(_median(other)),
                "calls_per_step": sum(r["calls_per_step"] for r in rest),
                "steps_ms": [_r(x) for x in other],
                "ops": len(rest),
            }
        )
    totals = [step_total[i] / 1000.0 for i in want]
    walls = [(steps[i].end_us - steps[i].start_us) / 1000.0 for i in want]
    denoise = stages.get("denoise")
    stage_rows = {k: _r(v) for k, v in sorted(stages.items())}
    if denoise is None and totals:
        stage_rows["denoise_per_step"] = _r(_median(totals))
    return {
        "schema": PROFILE_SCHEMA,
        "time_basis": time_basis,
        "steps": want,
        "total_ms_per_step": _r(_median(totals)),
        "steps_total_ms": [_r(x) for x in totals],
        "step_wall_ms": [_r(x) for x in walls],
        "ops": kept,
        "modules": rows(per_block)[:MAX_MODULES],
        "stages_ms": stage_rows,
    }


def from_torch_events(events: Any, counted: Sequence[int], *, device_time: bool) -> dict[str, Any]:
    """torch.profiler's FunctionEvents (CPU-side ops and our ranges) -> aggregates. On CUDA an op's time is its
    self device time (the kernels it launched itself), else its self CPU time; kernels belong to the op (and so
    the step) that launched them, wherever their own timestamps fall."""
    from torch.autograd import DeviceType

    spans = []
    for e in events:
        if e.device_type != DeviceType.CPU or getattr(e, "is_async", False):
            continue
        tr = e.time_range
        name = e.name
        if name.startswith("guardrail/"):
            spans.append(Span(name, float(tr.start), float(tr.end), 0.0, int(e.thread)))
            continue
        value = e.self_device_time_total if device_time else e.self_cpu_time_total
        spans.append(Span(name, float(tr.start), float(tr.end), float(value), int(e.thread)))
    return aggregate(spans, counted, time_basis="self_device" if device_time else "self_cpu")


def from_npu_kernels(kernel_csv: Path, counted: Sequence[int]) -> dict[str, Any]:
    """torch_npu.profiler's ASCEND_PROFILER_OUTPUT/kernel_details.csv (one row per device kernel, with its Step
    Id when a schedule ran) -> aggregates by kernel type. Every step the schedule kept is counted (its active
    window was the counted steps); blocks and stages are not attributed (the CSV carries no CPU ranges)."""
    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    step_ids: list[str] = []
    with open(kernel_csv, newline="") as f:
        for row in csv.DictReader(f):
            sid = (row.get("Step Id") or "0").strip()
            if sid not in step_ids:
                step_ids.append(sid)
            name = (row.get("Type") or row.get("Name") or "?").strip()
            cell = per[name][sid]
            cell[0] += float(row.get("Duration(us)") or 0.0)
            cell[1] += 1
    spans_total = {sid: sum(per[n][sid][0] for n in per if sid in per[n]) for sid in step_ids}
    ops = []
    for name, by_step in per.items():
        ms = [by_step[s][0] / 1000.0 if s in by_step else 0.0 for s in step_ids]
        calls = [by_step[s][1] if s in by_step else 0.0 for s in step_ids]
        ops.append(
            {
                "name": name,
                "ms_per_step": _r(_median(ms)),
                "calls_per_step": _median(calls),
                "steps_ms": [_r(x) for x in ms],
            }
        )
    ops.sort(key=_by_cost)
    totals = [spans_total[s] / 1000.0 for s in step_ids]
    return {
        "schema": PROFILE_SCHEMA,
        "time_basis": "self_device",
        "steps": list(counted)[: len(step_ids)],
        "total_ms_per_step": _r(_median(totals)),
        "steps_total_ms": [_r(x) for x in totals],
        "step_wall_ms": [],
        "ops": ops[:MAX_OPS],
        "modules": [],
        "stages_ms": {},
    }
