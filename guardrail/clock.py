"""The one clock: every "now" in the product comes from here, so tests, replays and CI can set it.

`GUARDRAIL_NOW` (an ISO-8601 instant) starts the clock of a whole process at that instant, from where it runs
on at real speed — a replay of history night by night, or a test that starts the CLI in a subprocess.
Inside one process, `starting_at(t)` does the same for a block and `frozen(t)` stops the clock at `t`.
Without any of these it is the system clock, in UTC.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

ENV = "GUARDRAIL_NOW"

# (instant, monotonic reading when it was set, ticking?) or None for the system clock.
_set: tuple[datetime, float, bool] | None = None
_env_seen: tuple[str, datetime, float] | None = None


def parse_instant(text: str) -> datetime:
    """An ISO-8601 instant; a time without a zone is UTC."""
    t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _from_env(raw: str) -> datetime:
    global _env_seen
    if _env_seen is None or _env_seen[0] != raw:
        try:
            start = parse_instant(raw)
        except ValueError:
            from guardrail.errors import InputError

            raise InputError(f"not an ISO-8601 instant: {raw!r}", field=ENV) from None
        _env_seen = (raw, start, time.monotonic())
    return _env_seen[1] + timedelta(seconds=time.monotonic() - _env_seen[2])


def now() -> datetime:
    """The current instant, timezone-aware, in UTC."""
    if _set is not None:
        at, mono, ticking = _set
        return at + timedelta(seconds=time.monotonic() - mono) if ticking else at
    raw = os.environ.get(ENV)
    if raw:
        return _from_env(raw)
    return datetime.now(UTC)


def timestamp() -> float:
    """now() as seconds since the epoch (for HTTP headers such as a rate limit's reset time)."""
    return now().timestamp()


def _utc(at: datetime) -> datetime:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)


@contextmanager
def _setting(at: datetime, ticking: bool) -> Iterator[datetime]:
    global _set
    before, _set = _set, (_utc(at), time.monotonic(), ticking)
    try:
        yield _set[0]
    finally:
        _set = before


def starting_at(at: datetime):
    """Within the block, the clock starts at `at` and runs on at real speed (this process only)."""
    return _setting(at, True)


def frozen(at: datetime):
    """Within the block, the clock stands still at `at` (this process only)."""
    return _setting(at, False)
