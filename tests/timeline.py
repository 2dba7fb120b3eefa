"""The suite's calendar: every test runs as if it were NOW, whatever the machine's clock says.

conftest.py starts the product's clock (guardrail.clock, through GUARDRAIL_NOW, so subprocesses see it too)
at NOW; fixtures are dated relative to it with `at()` / `iso()` / `day()`. `scripts/test-clock` runs the
suite under faketime a year either way to prove that nothing reads the wall clock behind the clock's back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def at(*, days: float = 0, hours: float = 0, minutes: float = 0) -> datetime:
    """NOW shifted by the given amounts (negative: in the past)."""
    return NOW + timedelta(days=days, hours=hours, minutes=minutes)


def iso(*, days: float = 0, hours: float = 0, minutes: float = 0) -> str:
    """at(...) as the result files write it: ISO-8601 with a Z."""
    return at(days=days, hours=hours, minutes=minutes).isoformat().replace("+00:00", "Z")


def day(*, days: float = 0) -> str:
    """The calendar day (YYYY-MM-DD) of at(days=...)."""
    return at(days=days).date().isoformat()
