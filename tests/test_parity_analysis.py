"""GPU↔NPU parity on plain data: normalisation by the shipped rules, the classification of each reference case,
per-suite counts, best verdict across lanes, the per-day series and the CI minutes (guardrail.analysis.parity)."""

from __future__ import annotations

from typing import cast

import pytest

from guardrail.analysis.junit_model import VerdictKind
from guardrail.analysis.parity import CaseResult, LaneRun, ParityRules, latest_per_lane, parity, snapshot
from guardrail.parity import load_rules
from tests.timeline import at, day

RULES = load_rules()  # baselines/parity-rules.yaml, as shipped


@pytest.mark.parametrize(
    ("gpu", "npu"),
    [
        ("tests/ops/test_attn.py::test_attn[cuda-bf16]", "tests/ops/test_attn.py::test_attn[npu-bf16]"),
        ("tests/ops/test_attn.py::test_attn[bf16-cuda:0]", "tests/ops/test_attn.py::test_attn[bf16-npu:0]"),
        ("tests/ops/test_rope.py::test_x_cuda", "tests/ops/test_rope.py::test_x_npu"),
        ("tests/cuda/test_ops.py::test_rms_norm", "tests/npu/test_ops.py::test_rms_norm"),
        ("tests/test_ops_cuda.py::test_mm_cuda_fp16", "tests/test_ops_npu.py::test_mm_npu_fp16"),
        ("tests/test_graph.py::test_cuda_graph_capture", "tests/test_graph.py::test_npu_graph_capture"),
        ("test/test_linalg.py::TestLinalgCUDA::test_inv", "test/test_linalg.py::TestLinalgPRIVATEUSE1::test_inv"),
    ],
)
def test_shipped_rules_give_a_gpu_test_and_its_npu_counterpart_one_id(gpu, npu):
    assert RULES.normalise(gpu) == RULES.normalise(npu)


def test_shipped_rules_keep_device_words_inside_names_and_exclude_gpu_only_kernels():
    assert RULES.normalise("tests/test_cudagraph.py::test_accuracy") == "tests/test_cudagraph.py::test_accuracy"
    assert RULES.normalise("tests/test_x.py::test_a[bf16]") == "tests/test_x.py::test_a[bf16]"
    rule = RULES.exclusion("tests/kernels/test_attention.py::test_flash_attn_3[cuda-bf16]")
    assert rule is not None and "Hopper" in rule.reason
    assert RULES.exclusion("tests/kernels/test_attention.py::test_flash_attn[cuda-bf16]") is None


def run(lane: str, hw: str, run_id: int, days: float, cases: list[tuple[str, str]], minutes: float = 1.0) -> LaneRun:
    return LaneRun(
        lane,
        hw,
        run_id,
        at(days=days),
        tuple(CaseResult(t, t.split("::")[0], cast(VerdictKind, v)) for t, v in cases),
        minutes,
    )


GPU = [
    ("tests/a.py::test_p[cuda]", "pass"),
    ("tests/a.py::test_q[cuda]", "fail"),  # failing on the reference is still a case
    ("tests/a.py::test_r[cuda]", "pass"),
    ("tests/a.py::test_fa3", "pass"),
    ("tests/b.py::test_s_cuda", "pass"),
    ("tests/b.py::test_t", "skip"),  # skipped on the reference: no case
    ("tests/b.py::test_u", "pass"),
]
NPU = [
    ("tests/a.py::test_p[npu]", "pass"),
    ("tests/a.py::test_q[npu]", "flaky"),
    ("tests/a.py::test_r[npu]", "skip"),
    ("tests/b.py::test_s_npu", "pass"),
    ("tests/b.py::test_t", "pass"),
    ("tests/b.py::test_npu_only", "pass"),
]


def test_each_reference_case_is_classified_and_counted_per_suite():
    s = snapshot([run("gpu", "H100", 1, 0, GPU)], [run("npu", "A3", 2, 0, NPU)], RULES)
    assert (s.counts.cases, s.counts.ran, s.counts.passed) == (5, 3, 2)
    assert (s.counts.run_share, s.counts.pass_share) == (0.6, 0.4)
    assert [c.test for c in s.passed] == ["tests/a.py::test_p[cuda]", "tests/b.py::test_s_cuda"]
    assert [(c.test, c.verdict) for c in s.failing] == [("tests/a.py::test_q[cuda]", "flaky")]  # flaky counts failing
    assert [(c.test, c.target_test) for c in s.skipped] == [("tests/a.py::test_r[cuda]", "tests/a.py::test_r[npu]")]
    assert [c.test for c in s.missing] == ["tests/b.py::test_u"]
    assert [(c.test, c.reason is not None) for c in s.excluded] == [("tests/a.py::test_fa3", True)]
    assert [c.test for c in s.reference_skipped] == ["tests/b.py::test_t"]
    assert s.target_only == ("tests/b.py::test_DEVICE_only",)
    by = {x.suite: x for x in s.suites}
    assert (by["tests/a.py"].counts.cases, by["tests/a.py"].counts.ran, by["tests/a.py"].counts.passed) == (3, 2, 1)
    assert (by["tests/a.py"].skipped, by["tests/a.py"].failing, by["tests/a.py"].excluded) == (1, 1, 1)
    assert (by["tests/b.py"].counts.cases, by["tests/b.py"].missing, by["tests/b.py"].counts.pass_share) == (2, 1, 0.5)


def test_a_test_that_passes_in_any_lane_of_the_target_passes():
    npu_b = [("tests/a.py::test_q[npu]", "pass"), ("tests/b.py::test_u", "skip")]
    s = snapshot([run("gpu", "H100", 1, 0, GPU)], [run("npu", "A3", 2, 0, NPU), run("npu-2", "A3", 3, 0, npu_b)], RULES)
    assert [c.test for c in s.failing] == []
    assert [c.test for c in s.skipped] == ["tests/a.py::test_r[cuda]", "tests/b.py::test_u"]
    assert (s.counts.ran, s.counts.passed) == (3, 3)


def test_no_rules_means_exact_ids_and_an_empty_store_side_gives_no_share():
    s = snapshot([run("gpu", "H100", 1, 0, GPU)], [run("npu", "A3", 2, 0, NPU)], ParityRules())
    assert [c.test for c in s.passed] == []  # nothing matches without normalisation
    assert s.counts.cases == 6 and s.excluded == ()
    empty = snapshot([], [], RULES)
    assert (empty.counts.cases, empty.counts.run_share, empty.counts.pass_share) == (0, None, None)


def test_the_series_reads_the_newest_run_of_each_lane_up_to_each_day_and_minutes_are_per_lane():
    gpu = [run("gpu", "H100", 1, -2, GPU, 10.0), run("gpu", "H100", 3, 0, GPU, 12.0)]
    npu_old = [("tests/a.py::test_p[npu]", "pass")]
    npu = [run("npu", "A3", 2, -1, npu_old, 30.0), run("npu", "A3", 4, 0, NPU, 20.0)]
    assert [r.run_id for r in latest_per_lane([*gpu, *npu], until=at(days=-1).date())] == [1, 2]
    rep = parity("H100", "A3", gpu, npu, RULES)
    # day -2: only the GPU has run (left out); day -1: GPU run 1 against NPU run 2; day 0: the newest of both
    assert [(p.day, p.counts.ran, p.counts.passed) for p in rep.series] == [(day(days=-1), 1, 1), (day(days=0), 3, 2)]
    assert [r.run_id for r in rep.reference_runs] == [3] and [r.run_id for r in rep.target_runs] == [4]
    doc = rep.to_dict()
    assert doc["schema"] == "guardrail.parity/v1" and doc["pass_share"] == 0.4 and doc["meets_goal"] is False
    assert doc["ci_minutes"]["lanes"] == [
        {
            "role": "reference",
            "lane": "gpu",
            "hardware": "H100",
            "runs": 2,
            "median_minutes": 11.0,
            "total_minutes": 22.0,
        },
        {"role": "target", "lane": "npu", "hardware": "A3", "runs": 2, "median_minutes": 25.0, "total_minutes": 50.0},
    ]
    assert (doc["ci_minutes"]["reference_latest"], doc["ci_minutes"]["target_latest"]) == (12.0, 20.0)
    assert doc["ci_minutes"]["target_vs_reference"] == pytest.approx(1.6667, abs=1e-4)
