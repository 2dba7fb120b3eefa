"""Thresholds and the informational list by metric family (issue 12, point 7): a policy key is a metric name or
an fnmatch glob; the exact name wins, else the most specific glob, else `default`. The policy alone, no DB."""

from __future__ import annotations

import pytest

from guardrail.policy import Policy, best_match, load_lane_policy

FAMILIES = {
    "default": 0.01,
    "peak_memory*": 0.02,
    "peak_memory_mb_max": 0.03,
    "*latency*": 0.015,
    "stage_mean.*": 0.05,
    "stage_mean.queue_wait*": 0.5,
}


@pytest.mark.parametrize(
    ("metric", "threshold"),
    [
        ("peak_memory_mb_max", 0.03),  # the exact name wins over its family
        ("peak_memory_mb_mean", 0.02),  # the family glob reaches the adapters' names
        ("peak_memory", 0.02),  # `*` matches nothing too
        ("latency_p99", 0.015),
        ("stage_mean.vae.decode", 0.05),
        ("stage_mean.queue_wait_ms", 0.5),  # 20 literal characters beat stage_mean.*'s 11
        ("throughput_qps", 0.01),  # no family: the default
    ],
)
def test_threshold_exact_then_most_specific_glob_then_default(metric, threshold):
    assert Policy(lane="x", thresholds=FAMILIES).threshold(metric) == threshold


def test_a_tie_goes_to_the_key_listed_first_and_default_is_no_pattern():
    assert best_match("a_latency_ms", ["*latency*", "*_ms", "a_*"]) == "*latency*"  # 7, 3, 2 literal chars
    assert best_match("ab", ["a*", "*b"]) == "a*"
    assert best_match("ab", ["*b", "a*"]) == "*b"
    assert Policy(lane="x", thresholds={"default": 0.04, "*": 0.02}).threshold("default_x") == 0.02
    assert Policy(lane="x", thresholds={"peak_memory*": 0.02}).threshold("latency_mean") == 0.01  # no default key


def test_brackets_in_a_stage_name_match_exactly():
    name = "stage_mean.HunyuanImage3Pipeline.model.layers[0].forward"
    assert Policy(lane="x", thresholds={"default": 0.01, name: 0.07}).threshold(name) == 0.07


def test_informational_takes_names_and_globs():
    policy = Policy(lane="x", informational=["load_time", "*queue_wait*"])
    assert "load_time" in policy.informational
    assert "stage_mean.queue_wait_ms" in policy.informational
    assert "load_time_s" not in policy.informational  # a name is no prefix
    assert "latency_mean" not in policy.informational
    assert "latency_mean" not in Policy(lane="x").informational


@pytest.mark.parametrize("lane", ["nightly", "presubmit", "extended", "release"])
def test_the_shipped_lanes_judge_the_corpus_metric_families(lane):
    policy = load_lane_policy(lane)
    assert {m: policy.threshold(m) for m in ("peak_memory_mb_max", "peak_memory_mb_mean", "peak_memory_mb_median")} == {
        "peak_memory_mb_max": 0.02,
        "peak_memory_mb_mean": 0.02,
        "peak_memory_mb_median": 0.02,
    }
    for latency in ("latency_mean", "latency_p99", "mean_ttft_ms", "p99_e2el_ms", "mean_audio_ttfp_ms"):
        assert policy.threshold(latency) == policy.thresholds["default"] == 0.01
    for rate in ("throughput_qps", "request_throughput", "total_token_throughput"):
        assert policy.threshold(rate) == 0.01
    assert policy.threshold("stage_mean.QwenImageEditPipeline.diffuse") == 0.05
    assert "stage_mean.queue_wait_ms" in policy.informational
    assert "stage_mean.stage_0_gen_ms" not in policy.informational
