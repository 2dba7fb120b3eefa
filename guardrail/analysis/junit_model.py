"""The JUnit data model: test identity, one execution per attempt, one verdict per test per commit pair.

Pure data: frozen dataclasses with ``to_dict()`` so that the store and the reports can persist or
render them without knowing how they were parsed. See docs/flaky.md for what each field means.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["pass", "fail", "error", "skip"]
VerdictKind = Literal["pass", "fail", "flaky", "skip"]
Phase = Literal["call", "setup", "teardown"]

FAILED: frozenset[str] = frozenset({"fail", "error"})


@dataclass(frozen=True, slots=True)
class CaseIdentity:
    """What makes two executions "the same test": suite, file, class, name, parameters, hardware."""

    suite: str
    file: str | None
    classname: str | None
    name: str
    params: str | None = None
    hardware: str | None = None
    # computed once: identities key every dict of the ingest (~1M lookups for 100k test cases), and the
    # generated __hash__ rebuilt the field tuple on each one
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_hash", hash((self.suite, self.file, self.classname, self.name, self.params, self.hardware))
        )

    def __hash__(self) -> int:
        return self._hash

    def __getstate__(self) -> tuple:  # a pickled identity rehashes where it is loaded (str hashes are per process)
        return (self.suite, self.file, self.classname, self.name, self.params, self.hardware)

    def __setstate__(self, state: tuple) -> None:
        for name, value in zip(("suite", "file", "classname", "name", "params", "hardware"), state, strict=True):
            object.__setattr__(self, name, value)
        self.__post_init__()

    @property
    def id(self) -> str:
        """A pytest-style node id: ``tests/test_io.py::TestX::test_a[p]`` (``pkg.Class::name`` for Java)."""
        return node_id(self.file, self.classname, self.name, self.params)

    @property
    def key(self) -> str:
        """The test *variant*: the id plus the hardware it ran on; flakiness is tracked per key."""
        return f"{self.id}@{self.hardware}" if self.hardware else self.id

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "suite": self.suite,
            "file": self.file,
            "classname": self.classname,
            "name": self.name,
            "params": self.params,
            "hardware": self.hardware,
        }


def node_id(file: str | None, classname: str | None, name: str, params: str | None) -> str:
    """:attr:`CaseIdentity.id` from the fields (the ingest keys plain tuples with it)."""
    base = "::".join([p for p in (file, classname) if p] + [name])
    return f"{base}[{params}]" if params is not None else base


def key_hash(key: str) -> str:
    """The fixed-size hash of a test key (:attr:`CaseIdentity.key`) that carries the unique index of ``tests``."""
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True, slots=True)
class CaseRecord:
    """One execution = one attempt of one test.

    ``job_attempt`` is the CI run attempt (a re-run of the whole workflow), ``process_attempt`` a rerun
    in a fresh process (what ``guardrail rerun-plan`` asks for), ``inprocess_attempt`` a retry inside
    the same process (pytest-rerunfailures, Surefire ``rerunFailingTestsCount``, PyTorch ``<rerun>``).
    ``final`` marks the last attempt of the test within its (job, process) attempt in this file.
    """

    identity: CaseIdentity
    outcome: Outcome
    duration_s: float
    job_attempt: int = 1
    process_attempt: int = 1
    inprocess_attempt: int = 1
    final: bool = True
    phase: Phase = "call"
    failure_type: str | None = None
    message: str | None = None
    signature: str | None = None
    # where the attempt came from: testcase, rerun (PyTorch), flakyFailure/flakyError/rerunFailure/
    # rerunError (Surefire), or "rerun-testcase" (an earlier pytest-rerunfailures <testcase>)
    source: str = "testcase"
    properties: tuple[tuple[str, str], ...] = ()
    system_out: str | None = None

    @property
    def attempt(self) -> tuple[int, int, int]:
        return (self.job_attempt, self.process_attempt, self.inprocess_attempt)

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.identity.to_dict(),
            "outcome": self.outcome,
            "duration_s": self.duration_s,
            "job_attempt": self.job_attempt,
            "process_attempt": self.process_attempt,
            "inprocess_attempt": self.inprocess_attempt,
            "final": self.final,
            "phase": self.phase,
            "failure_type": self.failure_type,
            "message": self.message,
            "signature": self.signature,
            "source": self.source,
            "properties": dict(self.properties),
            "system_out": self.system_out,
        }


@dataclass(frozen=True, slots=True)
class CaseVerdict:
    """One verdict per test variant per (head commit, base commit), over all its attempts.

    ``pass``: every attempt passed. ``fail``: every attempt failed. ``flaky``: the same code both
    passed and failed. ``skip``: it never ran (kept so that the flaky report can show it; it counts
    neither for nor against a test).
    """

    identity: CaseIdentity
    verdict: VerdictKind
    head_commit: str | None
    base_commit: str | None
    final_outcome: Outcome
    attempts: int
    failed_attempts: int
    signatures: tuple[str, ...] = ()
    duration_s: float = 0.0
    # time spent on attempts after the first one: the CI minutes reruns cost
    rerun_duration_s: float = 0.0
    phases: tuple[str, ...] = field(default=())
    # distinct fresh processes the test ran in (1 + fresh-process reruns so far), over job attempts
    process_attempts: int = 1

    @property
    def fails_every_attempt(self) -> bool:
        return self.attempts > 0 and self.failed_attempts == self.attempts

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.identity.to_dict(),
            "verdict": self.verdict,
            "head_commit": self.head_commit,
            "base_commit": self.base_commit,
            "final_outcome": self.final_outcome,
            "attempts": self.attempts,
            "failed_attempts": self.failed_attempts,
            "signatures": list(self.signatures),
            "duration_s": self.duration_s,
            "rerun_duration_s": self.rerun_duration_s,
            "phases": list(self.phases),
            "process_attempts": self.process_attempts,
        }


# --- failure signatures -------------------------------------------------------------------------
# Order matters: uuids and hex runs before plain numbers, paths before numbers (a path may hold digits).
_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
        "<uuid>",
    ),
    (re.compile(r"\b0[xX][0-9a-fA-F]+\b"), "<addr>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"), "<hex>"),
    (re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.@+~-]+){2,}[\\/]?|\b[\w.-]+(?:/[\w.-]+)+"), "<path>"),
    (re.compile(r"(?<![A-Za-z_])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
)
_SIGNATURE_CHARS = 2000


def mask_message(message: str) -> str:
    """The message with what changes between occurrences of the same failure masked out."""
    text = message[:_SIGNATURE_CHARS]
    for pattern, repl in _MASKS:
        text = pattern.sub(repl, text)
    return text.strip()


def failure_signature(failure_type: str | None, message: str | None) -> str | None:
    """A short stable hash of (type, masked message); None when there is nothing to hash."""
    if not failure_type and not message:
        return None
    text = f"{failure_type or ''}\n{mask_message(message or '')}"
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]
