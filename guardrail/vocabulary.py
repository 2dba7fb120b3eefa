"""The words every layer shares, written once: verdict kinds and what they mean for a merge, the order reports
list them in, check statuses, alert kinds and triage states. Imports nothing of ours (docs/statistics.md has
the rule behind each verdict)."""

from __future__ import annotations

from typing import Literal, get_args

# `new`: a series' first run in the history its lane reads (nothing to compare with yet; recorded, never blocks).
# `suspect`: a per-run summary off its level for one night only, on a lane that confirms those (policy
# `confirm_summary_regressions`): judged again on the next run before blaming; never blocks.
# `output_mismatch`: an output-equivalence metric (a parallel or cached run's picture against the single-device,
# uncached one) outside the lane's bound (policy `equivalence`): the run changed the picture, however fast it is.
Verdict = Literal[
    "regression", "improvement", "no_change", "inconclusive", "noisy", "missing", "new", "suspect", "output_mismatch"
]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)  # also the key order of a verdicts document's `summary`
# What blocks a merge: a real regression, a changed picture, or no usable baseline for a series with history (fail
# closed, never a silent pass). A `new` series has no history: it is recorded and does not block.
BLOCKING: tuple[Verdict, ...] = ("regression", "missing", "output_mismatch")
# Final at any look of sequential confirmation: more repeats of the candidate would not change them.
SETTLED: tuple[Verdict, ...] = ("regression", "improvement", "no_change", "missing", "new", "output_mismatch")
# What needs attention first: reports list rows in this order, and a workload shows its worst verdict.
DISPLAY_ORDER: tuple[Verdict, ...] = (
    "output_mismatch",
    "regression",
    "missing",
    "suspect",
    "noisy",
    "inconclusive",
    "improvement",
    "new",
    "no_change",
)
VERDICT_RANK: dict[str, int] = {v: len(DISPLAY_ORDER) - 1 - i for i, v in enumerate(DISPLAY_ORDER)}  # higher: worse

Status = Literal["success", "failure", "error"]  # of a check: a blocking verdict, else an infra error, else success
STATUS_RANK: dict[str, int] = {"success": 0, "error": 1, "failure": 2}  # checks merged: the worst status wins

# An alert is one change: a regression if any of its metrics got worse, else an improvement (never an open
# regression). Whether a check raised it or the change-point scan placed it is not its kind.
AlertKind = Literal["regression", "improvement"]
ALERT_KINDS: tuple[AlertKind, ...] = get_args(AlertKind)
# Which way the metrics of a change point moved, by their directions ("change" when no direction is known).
ChangeKind = Literal["regression", "improvement", "mixed", "change"]

TriageState = Literal["untriaged", "acknowledged", "confirmed", "invalid", "expected", "fixed", "infra"]
TRIAGE_STATES: tuple[TriageState, ...] = get_args(TriageState)
OPEN_STATES: tuple[TriageState, ...] = ("untriaged", "acknowledged", "confirmed")  # the rest resolve an alert
EXPECTED: TriageState = "expected"  # an intended change: the series is re-baselined from it
FIXED: TriageState = "fixed"  # the state an alert resolves itself to when its series returns
