"""The rerun policy: the numbers behind every flakiness, quarantine and rerun decision.

Frozen dataclasses whose defaults are the documented rules (docs/flaky.md); ``baselines/rerun-policy.yaml``
holds the same numbers and is read by :func:`guardrail.rerun_policy.yaml_file.load_rerun_policy`. The YAML
reading lives in that submodule so that the pure analysis layer can take these classes without importing a
YAML parser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from guardrail.errors import InputError


@dataclass(frozen=True)
class FlakinessPolicy:
    window_days: int = 14
    window_verdicts: int = 100
    min_flaky_verdicts: int = 2
    min_score: float = 0.01
    broken_after: int = 2
    infra_failed_share: float = 0.20
    infra_min_tests: int = 10


@dataclass(frozen=True)
class QuarantinePolicy:
    enter_flaky_verdicts: int = 3
    enter_distinct_commits: int = 2
    enter_window_days: int = 7
    release_passes: int = 30
    release_clean_days: int = 7


@dataclass(frozen=True)
class CaseRerunPolicy:
    """Fresh-process reruns of failed test cases."""

    max_reruns_per_test: int = 2
    max_tests_per_job: int = 20
    # Reruns stop when more tests failed than max(min_failed_allowed, floor(max_failed_share x tests run)):
    # a share alone would forbid every rerun in a suite of fewer than 20 tests (1 of 16 is 6%).
    max_failed_share: float = 0.05
    min_failed_allowed: int = 1

    def failed_allowed(self, ran: int) -> int:
        """How many failed tests a job of ``ran`` tests may have and still get reruns."""
        return max(self.min_failed_allowed, math.floor(self.max_failed_share * ran + 1e-9))


@dataclass(frozen=True)
class PerfRerunPolicy:
    rerun_verdicts: tuple[str, ...] = ("inconclusive", "regression")
    default_extra_repeats: int = 3
    max_extra_repeats: int = 10
    max_workloads_per_job: int = 8


@dataclass(frozen=True)
class RerunPolicy:
    flakiness: FlakinessPolicy = field(default_factory=FlakinessPolicy)
    quarantine: QuarantinePolicy = field(default_factory=QuarantinePolicy)
    tests: CaseRerunPolicy = field(default_factory=CaseRerunPolicy)
    performance: PerfRerunPolicy = field(default_factory=PerfRerunPolicy)


SECTIONS: dict[str, type] = {
    "flakiness": FlakinessPolicy,
    "quarantine": QuarantinePolicy,
    "tests": CaseRerunPolicy,
    "performance": PerfRerunPolicy,
}


def rerun_policy_from_mapping(data: Any, *, file: str) -> RerunPolicy:
    """The policy a parsed file describes; missing keys keep their defaults, unknown keys or bad values are an
    :class:`InputError` naming ``file`` and the field."""
    if not isinstance(data, dict):
        raise InputError("expected a mapping at the top level", file=file, field="$")
    sections: dict[str, Any] = {}
    for name, value in data.items():
        cls = SECTIONS.get(name)
        if cls is None:
            raise InputError(f"unknown section (known: {', '.join(SECTIONS)})", file=file, field=name)
        if not isinstance(value, dict):
            raise InputError("expected a mapping", file=file, field=name)
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, v in value.items():
            if key not in known:
                raise InputError("unknown key", file=file, field=f"{name}.{key}")
            kwargs[key] = _value(getattr(cls(), key), v, file=file, field=f"{name}.{key}")
        sections[name] = cls(**kwargs)
    return RerunPolicy(**sections)


def _value(default: Any, v: Any, *, file: str, field: str) -> Any:
    """``v`` checked against the type of the field's default."""
    if isinstance(default, tuple):
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise InputError("expected a list of names", file=file, field=field)
        return tuple(v)
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        raise InputError(f"expected a non-negative number, got {v!r}", file=file, field=field)
    if isinstance(default, int) and not isinstance(v, int):
        raise InputError(f"expected a whole number, got {v!r}", file=file, field=field)
    return v
