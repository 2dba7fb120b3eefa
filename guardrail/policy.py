"""Baseline policies per lane (`baselines/<lane>.yaml`): where a run's baseline comes from and how it is judged;
and the pinned reference values (`baselines/reference/*.yaml`) a series with no history starts from.

Loaded and validated once (pydantic); the rest of the code trusts the Policy object.
"""

from __future__ import annotations

import fnmatch
import functools
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, RootModel

from guardrail.errors import InputError
from guardrail.yaml_files import read_yaml, validated

BASELINES_DIR = Path(os.environ.get("GUARDRAIL_BASELINES", Path(__file__).resolve().parents[1] / "baselines"))
REFERENCE_DIR = BASELINES_DIR / "reference"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _literal_length(pattern: str) -> int:
    return len(pattern) - pattern.count("*") - pattern.count("?")


def best_match(metric: str, patterns: Iterable[str]) -> str | None:
    """The key that names `metric`: the exact name, else the most specific fnmatch glob that matches it (most
    characters that are not wildcards; a tie goes to the one listed first), else None."""
    keys = list(patterns)
    if metric in keys:
        return metric
    matching = [k for k in keys if fnmatch.fnmatchcase(metric, k)]
    return max(matching, key=_literal_length, default=None)  # max keeps the first of equals


class MetricPatterns(RootModel[tuple[str, ...]]):
    """Metric names or fnmatch globs (`*queue_wait*`); `metric in patterns` when one of them names it."""

    model_config = ConfigDict(frozen=True)

    def __contains__(self, metric: object) -> bool:
        return isinstance(metric, str) and best_match(metric, self.root) is not None


class BaselineSpec(_Strict):
    # history: recent runs of `lanes` (on `branch`) on the same hardware and pinned software;
    # pinned: the run pinned for this lane and hardware (`guardrail baseline pin`).
    source: Literal["history", "pinned"] = "history"
    lanes: list[str] = Field(default_factory=lambda: ["nightly"], min_length=1)
    branch: str | None = "main"
    window: int = Field(default=10, ge=1, le=1000)  # baseline runs compared against
    noise_history: int = Field(default=30, ge=1, le=5000)  # runs used to estimate the series' noise
    # base_commit: only runs at or before the PR's merge-base (presubmit); latest: the newest runs before this one.
    anchor: Literal["base_commit", "latest"] = "latest"
    same_software: list[str] = Field(default_factory=list)  # software keys whose values must match
    cold_start: Literal["reference", "none"] = "reference"  # when there is no history: pinned reference values


class EquivalenceBound(_Strict):
    """An absolute bound on an output-equivalence metric: at least `min` (PSNR, SSIM), at most `max` (max abs diff)."""

    min: float | None = None
    max: float | None = None

    def violated_by(self, value: float) -> bool:
        return (self.min is not None and value < self.min) or (self.max is not None and value > self.max)

    def describe(self) -> str:
        parts = ([f">= {self.min:g}"] if self.min is not None else []) + (
            [f"<= {self.max:g}"] if self.max is not None else []
        )
        return " and ".join(parts) or "unbounded"


# The field's practice: vLLM-Omni accepts a parallel picture at PSNR >= 30 dB and SSIM >= 0.97 against the
# single-device reference; a cached run (cache-dit) against the dense one at SSIM >= 0.90, PSNR >= 30.
DEFAULT_EQUIVALENCE = {
    "parallel_psnr": EquivalenceBound(min=30.0),
    "parallel_ssim": EquivalenceBound(min=0.97),
    "cache_psnr": EquivalenceBound(min=30.0),
    "cache_ssim": EquivalenceBound(min=0.90),
}


class Policy(_Strict):
    lane: str
    description: str = ""
    baseline: BaselineSpec = BaselineSpec()
    # metric name or family glob (`peak_memory*`) -> relative threshold; `default` for every other metric
    thresholds: dict[str, float] = Field(default_factory=lambda: {"default": 0.01})
    informational: MetricPatterns = MetricPatterns(())  # names or globs: reported, never gate
    # device type (cpu, cuda, npu) -> more informational names or globs on that device only: on the CPU lane
    # wall time is informational and process CPU time gates (docs/runners.md, "The CPU lane")
    informational_on: dict[str, MetricPatterns] = Field(default_factory=dict)
    # metric name or glob -> absolute bound: a value outside it is `output_mismatch` (judged on its own, not
    # against the baseline, and left out of false-discovery control)
    equivalence: dict[str, EquivalenceBound] = Field(default_factory=lambda: dict(DEFAULT_EQUIVALENCE))
    fdr: float = Field(default=0.05, gt=0, lt=1)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    # Looks of sequential confirmation: with more than one, an unclear or first-seen result is judged at an
    # alpha-spending level and asks for more repeats (the rerun plan) instead of deciding at once.
    max_looks: int = Field(default=1, ge=1, le=10)
    raise_alerts: bool = False  # regressions of this lane become alerts (lanes that watch main)
    # A regression of a per-run summary series (one value per run) that the series' previous check on this lane
    # did not show is `suspect`, not a regression: one night off its level is judged again on the next run.
    confirm_summary_regressions: bool = False

    def equivalence_bound(self, metric: str) -> EquivalenceBound | None:
        """The output-equivalence bound of `metric` (its exact name, else its most specific glob), if it has one."""
        key = best_match(metric, self.equivalence)
        return self.equivalence[key] if key is not None else None

    def is_informational(self, metric: str, device_type: str | None = None) -> bool:
        """Reported, never gating: in `informational`, or in `informational_on` of the result's device type."""
        extra = self.informational_on.get(device_type or "")
        return metric in self.informational or (extra is not None and metric in extra)

    def threshold(self, metric: str) -> float:
        """The threshold of `metric`: its exact name, else its most specific family glob, else `default`."""
        key = best_match(metric, (k for k in self.thresholds if k != "default"))
        return self.thresholds[key] if key is not None else self.thresholds.get("default", 0.01)


def _policy_file(lane: str, directory: Path) -> Path:
    return directory / f"{lane}.yaml"


@functools.cache
def load_lane_policy(lane: str, directory: Path = BASELINES_DIR) -> Policy:
    path = _policy_file(lane, directory)
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.yaml"))
        raise InputError(f"no baseline policy for lane {lane!r} (known: {', '.join(known) or 'none'})", file=str(path))
    policy = validated(Policy, read_yaml(path, "lane policy") or {}, path)
    if policy.lane != lane:
        raise InputError(f"file is for lane {policy.lane!r}, expected {lane!r}", file=str(path), field="$.lane")
    return policy


class ReferenceValue(Protocol):
    """A pinned value of one series (guardrail.ingest.reference.ReferenceBaseline is one)."""

    @property
    def workload(self) -> str: ...
    @property
    def metric(self) -> str: ...
    @property
    def hardware(self) -> str | None: ...
    @property
    def value(self) -> float: ...
    @property
    def dims(self) -> Mapping[str, str]: ...


class ColdStart:
    """The pinned per-hardware reference values, read from REFERENCE_DIR on first use by `read` (the reader of
    their YAML files sits in the ingest layer, above this one)."""

    NOTE = "pinned reference values (cold start)"  # how a report names them as a baseline

    def __init__(self, read: Callable[[Path], Iterable[ReferenceValue]], directory: Path = REFERENCE_DIR):
        self._read = read
        self._directory = directory

    @functools.cached_property
    def _index(self) -> dict[tuple[str, str, str], list[ReferenceValue]]:
        index: dict[tuple[str, str, str], list[ReferenceValue]] = defaultdict(list)
        if self._directory.is_dir():
            for ref in self._read(self._directory):
                if ref.hardware is not None:  # a value that names no hardware applies to none (fail closed)
                    index[(ref.workload, ref.metric, ref.hardware)].append(ref)
        return index

    def value(
        self, policy: Policy, *, workload: str, spec: Mapping[str, Any], metric: str, hardware: str
    ) -> float | None:
        """The reference value of a series, where the lane's policy starts cold from references: same workload,
        metric and hardware, and every dimension the value names equal to the workload's spec."""
        if policy.baseline.cold_start != "reference":
            return None
        for ref in self._index.get((workload, metric, hardware), []):
            if all(str(spec.get(k, "")) == v for k, v in ref.dims.items()):
                return ref.value
        return None
