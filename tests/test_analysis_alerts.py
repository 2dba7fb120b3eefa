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
