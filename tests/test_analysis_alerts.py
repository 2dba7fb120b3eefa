"""Change points -> commit-range alerts, one per workload and commit, deduplicated."""

from __future__ import annotations

import numpy as np

from guardrail.analysis.alerts import attribute, attribute_and_dedup


def _series(rng, at, shift, n=80, noise=0.3):
    x = rng.normal(100, noise, n)
    x[at:] += shift
    return list(x)


def test_metrics_of_one_workload_at_one_commit_become_one_alert():
    rng = np.random.default_rng(0)
    commits = [f"c{i:02d}" for i in range(80)]
    times = [f"2026-06-{i:03d}" for i in range(80)]
    points = {
        ("wan22", "latency_mean"): attribute(_series(rng, 50, 4), commits, times),
        ("wan22", "latency_p99"): attribute(_series(rng, 50, 6), commits, times),
        ("qwen", "latency_mean"): attribute(_series(rng, 30, -5), commits, times),
    }
    directions = dict.fromkeys(points, "lower_is_better")
    alerts = attribute_and_dedup(points, directions=directions)
    assert [(a.workload, a.commit_range) for a in alerts] == [
        ("qwen", ("c29", "c30")),
        ("wan22", ("c49", "c50")),
    ]
    wan = alerts[1]
    assert len(wan.members) == 2 and wan.kind == "regression"
    assert wan.worst_change > 0.05
    assert alerts[0].kind == "improvement"
    assert wan.to_dict()["key"] == "wan22@c49..c50"


def test_known_alerts_are_not_raised_again():
    rng = np.random.default_rng(1)
    commits = [f"c{i:02d}" for i in range(80)]
    points = {"wan22/latency": attribute(_series(rng, 40, 5), commits)}
    [alert] = attribute_and_dedup(points)
    assert alert.workload == "wan22" and alert.kind == "change"
    assert attribute_and_dedup(points, known_keys={alert.key}) == []


def test_a_known_change_point_gains_only_the_series_it_lacks():
    rng = np.random.default_rng(1)
    commits = [f"c{i:02d}" for i in range(80)]
    steps = _series(rng, 40, 5)
    points = {"wan22/latency": attribute(steps, commits), "wan22/p99": attribute([v * 1.1 for v in steps], commits)}
    [alert] = attribute_and_dedup(points)
    assert len(alert.members) == 2
    # the alert held the latency already: only the p99 is new at that range
    [again] = attribute_and_dedup(points, known_keys={alert.key: {"wan22/latency"}})
    assert again.key == alert.key and [k for k, _ in again.members] == ["wan22/p99"]
    assert attribute_and_dedup(points, known_keys={alert.key: {"wan22/latency", "wan22/p99"}}) == []
