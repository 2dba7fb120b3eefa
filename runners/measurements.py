"""What one worker process hands the lane, as JSON across the process boundary (runners.worker writes it,
runners.lane reads it back): the metric catalogue and the worker's output.

The catalogue is the fields of :class:`Measurements`: each field is a metric, its annotation says the
metric's unit and direction. Workload specs name metrics from it, the engine fills it, the lane turns it
into `guardrail.result/v1` metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from guardrail.schema import Direction


@dataclass(frozen=True)
class MetricInfo:
    unit: str
    direction: Direction = "lower_is_better"


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# One process's samples of each metric (a list: one value per step, or one per generation); None when the
# workload does not ask for the metric (or, for compile_time, when nothing was compiled).
Samples = list[float] | None


class Measurements(_Output):
    """The metric catalogue, and one process's values of it."""

    denoise_step_latency: Annotated[Samples, MetricInfo("ms")] = None
    e2e_latency: Annotated[Samples, MetricInfo("ms")] = None
    text_encode_latency: Annotated[Samples, MetricInfo("ms")] = None
    denoise_latency: Annotated[Samples, MetricInfo("ms")] = None
    vae_decode_latency: Annotated[Samples, MetricInfo("ms")] = None
    peak_memory: Annotated[Samples, MetricInfo("MiB")] = None
    reserved_memory: Annotated[Samples, MetricInfo("MiB")] = None
    load_time: Annotated[Samples, MetricInfo("s")] = None
    warmup_time: Annotated[Samples, MetricInfo("s")] = None
    compile_time: Annotated[Samples, MetricInfo("s")] = None
    throughput: Annotated[Samples, MetricInfo("outputs/s", "higher_is_better")] = None
    # cache-dit's own counters for the measured generation (recorded whenever cache: cache_dit applied)
    cache_cached_steps: Annotated[Samples, MetricInfo("steps", "higher_is_better")] = None
    cache_computed_steps: Annotated[Samples, MetricInfo("steps")] = None
    cache_residual_diff: Annotated[Samples, MetricInfo("ratio")] = None  # one per step cache-dit checked
    # output equivalence against a no-cache generation of the same seed in the same process (only when the
    # workload lists them: it costs one more generation)
    cache_psnr: Annotated[Samples, MetricInfo("dB", "higher_is_better")] = None
    cache_ssim: Annotated[Samples, MetricInfo("ratio", "higher_is_better")] = None
    cache_max_abs_diff: Annotated[Samples, MetricInfo("abs")] = None
    # process CPU time (all threads) of each measured step and of the measured generation, on CPU only: the
    # CPU lane's gate, far steadier than wall time on a shared machine (docs/runners.md, "The CPU lane")
    denoise_step_cpu_time: Annotated[Samples, MetricInfo("ms")] = None
    e2e_cpu_time: Annotated[Samples, MetricInfo("ms")] = None
    # each measured step's CPU time over a fixed calibration kernel's, timed right after it (runners.calibration):
    # the machine's speed of the moment divided out; the CPU lane's gate. Not in a parallel job's ranks
    denoise_step_relative: Annotated[Samples, MetricInfo("ratio")] = None
    # exposed communication per measured step of a parallel job (runners.collectives): the rank's time inside
    # diffusers' blocking collectives; recorded whenever they were timed
    denoise_step_comm_time: Annotated[Samples, MetricInfo("ms")] = None

    def samples(self, metric: str) -> list[float]:
        """The values of one metric ([] when not measured)."""
        return getattr(self, metric) or []


CATALOGUE: dict[str, MetricInfo] = {
    name: next(m for m in field.metadata if isinstance(m, MetricInfo))
    for name, field in Measurements.model_fields.items()
}
METRICS = tuple(CATALOGUE)
# Recorded whenever the option behind them applied, asked for or not.
WHEN_APPLIED = (
    "compile_time",
    "cache_cached_steps",
    "cache_computed_steps",
    "cache_residual_diff",
    "denoise_step_comm_time",
)
# Measured only when a workload lists them (an extra no-cache generation per process).
EQUIVALENCE = ("cache_psnr", "cache_ssim", "cache_max_abs_diff")
# Recorded whenever the device is the CPU (a device has no process CPU time of its work).
CPU_TIME = ("denoise_step_cpu_time", "e2e_cpu_time", "denoise_step_relative")
# What a workload measures unless it lists its metrics (unchanged by the optional ones above, so existing
# workloads keep their digests).
DEFAULT_METRICS = [m for m in METRICS if m not in WHEN_APPLIED + EQUIVALENCE + CPU_TIME]


class Warmup(_Output):
    generations: int
    times_s: list[float]  # wall time of each warm-up generation
    step_latency_ms: list[float]  # the measured generation's first steps, counted as warm-up


class WorkerOk(_Output):
    """A process that measured its generation."""

    status: Literal["ok"] = "ok"
    metrics: Measurements
    warmup: Warmup
    applied: dict[str, Any]  # the options that took effect (compile, attention backend, cache)
    weights: str  # "synthetic" or the local weights path
    weights_digest: str | None
    fingerprint: dict[str, Any]  # downsampled output and its statistics (runners.engines.diffusers_engine)
    forward_ms_per_step: list[float]
    wall_e2e_s: float
    outputs: int  # images or video frames per generation
    overhead: dict[str, Any] | None = None  # GUARDRAIL_OVERHEAD_CHECK=1 only
    cache: dict[str, Any] | None = None  # cache-dit's counters, residual diffs, equivalence (runners.options)
    compile: dict[str, Any] | None = None  # compile time's derivation and Dynamo's counters


class WorkerFailure(_Output):
    """A process that produced no measurement: it raised (error), or the lane stopped it (timeout)."""

    status: Literal["error", "timeout"]
    kind: str  # oom, collective_timeout, device_error, compile_error, option_unavailable, exception, crash, timeout
    message: str


WorkerOutput = Annotated[WorkerOk | WorkerFailure, Field(discriminator="status")]
WORKER_OUTPUT: TypeAdapter[WorkerOk | WorkerFailure] = TypeAdapter(WorkerOutput)
