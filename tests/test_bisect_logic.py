"""The bisection's decisions on numbers alone: midpoints, ends, unclear -> more repeats, skip, confirm, budget."""

from __future__ import annotations

import random

import pytest

from guardrail.analysis.bisection import Config, Observed, decide, midpoint, read_commit, steps_left, verify_ends

CFG = Config(threshold=0.01, repeats=2, max_looks=3)


def reps(level: float, seed: int, k: int = 2, n: int = 8, cv: float = 0.01) -> list[list[float]]:
    r = random.Random(seed)
    return [[level * (1 + r.gauss(0, cv)) for _ in range(n)] for _ in range(k)]


def level_at(p: int, culprit: int) -> float:
    return 2.0 if p >= culprit else 1.0


def simulate(n: int, culprit: int, cfg: Config = CFG, *, infra: frozenset[int] = frozenset(),
             level=None, minutes: float = 0.0, limit: int = 60):  # fmt: skip
    """Run decide() to the end against a made-up range; returns (final action, positions measured in order)."""
    level = level or (lambda p: level_at(p, culprit))
    obs: dict[int, Observed] = {}
    order = []
    for i in range(limit):
        a = decide(n, obs, cfg)
        if a.kind != "run":
            return a, order
        p = a.position
        assert p is not None and a.repeats == cfg.repeats
        order.append(p)
        o = obs.get(p, Observed())
        if p in infra:
            obs[p] = Observed(o.repeats, o.infra_failures + 1, o.minutes + minutes)
        else:
            obs[p] = Observed(o.repeats + reps(level(p), seed=1000 * p + i), o.infra_failures, o.minutes + minutes)
    raise AssertionError("did not settle")


def test_midpoint_is_the_middle_untried_position():
    assert midpoint(0, 16, set()) == 8
    assert midpoint(0, 3, set()) == 1  # a tie goes to the lower one
    assert midpoint(4, 8, {6}) == 5
    assert midpoint(4, 5, set()) is None
    assert steps_left(0, 15) == 4 and steps_left(0, 1) == 0


def test_a_commit_reads_good_bad_or_unclear_against_both_ends():
    good, bad = reps(1.0, 1), reps(2.0, 2)
    assert read_commit(reps(1.0, 3), good, bad, CFG).reading == "good"
    assert read_commit(reps(2.0, 4), good, bad, CFG).reading == "bad"
    # half-way: a regression against the good end AND an improvement against the bad one
    assert read_commit(reps(1.5, 5), good, bad, CFG).reading == "unclear"


def test_ends_must_differ():
    assert verify_ends(reps(1.0, 1), reps(2.0, 2), CFG)[0] == "ok"
    # the same level at both ends never reads as ok: one run per end is too few to call it no_change at 1%
    # (the prior between-run noise), so it is unclear, and with more looks the ends stop the bisection
    assert verify_ends(reps(1.0, 1, cv=0.001), reps(1.0, 2, cv=0.001), CFG)[0] in ("unclear", "not_different")
    assert verify_ends(reps(1.0, 1), reps(0.5, 2), CFG)[0] == "not_different"  # the bad end is faster
    a, _ = simulate(8, culprit=99)  # no commit is slower
    assert a.kind == "stop" and a.stop in ("ends_not_different", "ends_unclear")


@pytest.mark.parametrize("culprit", [1, 5, 8, 11, 15])
def test_finds_the_culprit_in_log_steps_and_confirms_it(culprit):
    a, order = simulate(16, culprit)
    assert a.kind == "culprit" and a.position == culprit and a.low == culprit - 1
    assert order[:2] == [0, 15]  # the ends first
    assert order[-1] == culprit  # one more look at the culprit before naming it
    assert len(order) <= 2 + steps_left(0, 15) + 1
    c = a.confidence
    assert c["culprit_vs_good"]["verdict"] == "regression" and c["culprit_vs_good"]["p_value"] < 0.01
    assert c["parent_vs_bad"]["verdict"] == "improvement" and c["parent_vs_bad"]["p_value"] < 0.01


def test_unclear_commit_gets_more_repeats_then_is_skipped():
    # position 4 sits half-way between the ends: unclear at every look, so it is skipped after max_looks
    a, order = simulate(9, culprit=5, level=lambda p: 1.5 if p == 4 else level_at(p, 5))
    assert order.count(4) == CFG.max_looks
    assert a.kind == "stop" and a.stop == "only_skipped" and (a.low, a.high) == (3, 5)
    assert a.readings[4] == "skipped"


def test_infra_failure_skips_the_commit_and_moves_on():
    a, order = simulate(16, culprit=9, infra=frozenset({7}))
    assert order[2] == 7 and order.count(7) == 1  # the first midpoint fails: skipped at once, like git bisect skip
    assert order[3] == 8  # the next one tried is its neighbour nearest the middle
    assert a.kind == "culprit" and a.position == 9 and a.readings[7] == "skipped"


def test_a_skipped_parent_leaves_the_two_commits_open():
    a, _ = simulate(16, culprit=9, infra=frozenset({8}))
    assert a.kind == "stop" and a.stop == "only_skipped" and (a.low, a.high) == (7, 9)


def test_infra_failures_at_an_end_stop_the_bisection():
    a, order = simulate(16, culprit=9, infra=frozenset({0}))
    assert a.kind == "stop" and a.stop == "infra" and order == [0] * CFG.max_infra


def test_budget_spent_stops_with_the_remaining_range():
    cfg = Config(threshold=0.01, repeats=2, budget_minutes=3.0)
    a, order = simulate(16, culprit=11, cfg=cfg, minutes=1.0)
    assert a.kind == "stop" and a.stop == "budget_spent" and len(order) == 3
    assert a.low < 11 <= a.high and (a.low, a.high) != (0, 15)  # the one midpoint measured narrowed it
