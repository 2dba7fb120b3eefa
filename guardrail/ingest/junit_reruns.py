"""Reruns written as separate ``<testcase>`` elements: grouping them into one test's attempts.

pytest-rerunfailures writes one ``<testcase>`` per attempt; usually consecutively, but under xdist or with
``--reruns-delay`` the attempts of one test can lie any distance apart. An identity seen again anywhere in the
file is a rerun of the earlier one: grouping is by identity, never by distance (a distance window read attempts
further apart than it as passes, so an always-failing test became ``flaky``). The window holds the latest
``<testcase>`` of each identity until the file ends, then lets its attempts go, numbered in-process and with
only the last one ``final``.

Attempts are the reader's raw lists (:func:`guardrail.ingest.junit_xml.iter_raw`: ``CaseRecord``'s field order
with the identity tuple first); this module reads and sets ``[1]`` outcome, ``[5]`` in-process attempt,
``[6]`` final and ``[11]`` source.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class RerunWindow:
    def __init__(self) -> None:
        # identity -> (attempts of its latest <testcase>, attempts so far); insertion-ordered
        self._pending: OrderedDict[tuple, tuple[list[list[Any]], int]] = OrderedDict()

    def add(self, ident: tuple, attempts: list[list[Any]]) -> list[list[Any]]:
        """Take one ``<testcase>``'s attempts; returns the attempts of an earlier ``<testcase>`` of the same identity
        that it supersedes (none the first time an identity is seen)."""
        out: list[list[Any]] = []
        prev = self._pending.pop(ident, None)
        done = 0
        if prev is not None:
            prev_attempts, done = prev
            # Seen again: the earlier <testcase> was rerun. pytest-rerunfailures reruns only after a
            # failure, and writes that failed attempt as a bare <testcase> -- which reads as a pass.
            last = prev_attempts[-1]
            if last[1] == "pass" and last[11] == "testcase":
                last[1], last[11] = "fail", "rerun-testcase"
            for a in prev_attempts:
                a[6] = False
            out.extend(prev_attempts)
        if done or len(attempts) > 1:
            for i, a in enumerate(attempts, start=done + 1):
                a[5] = i
        self._pending[ident] = (attempts, done + len(attempts))
        return out

    def flush(self) -> list[list[Any]]:
        """Every attempt still in the window (at the end of the file)."""
        out: list[list[Any]] = []
        while self._pending:
            self._flush_one(out)
        return out

    def _flush_one(self, out: list[list[Any]]) -> None:
        _, (attempts, _) = self._pending.popitem(last=False)
        for a in attempts[:-1]:
            a[6] = False
        out.extend(attempts)  # the last one keeps final=True
