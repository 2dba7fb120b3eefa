"""Profile aggregates and the profile diff on numbers alone: span attribution to steps, blocks and stages; an
injected op slowdown ranked first with its size; new, vanished and recounted ops; one noisy step ignored; the diff
saying when it cannot explain a change; `guardrail profile-diff` on result files; the rerun plan asking for a
profile."""

from __future__ import annotations

import json

import pytest

from guardrail.analysis.perf_reruns import PerfCandidate, plan_perf_reruns
from guardrail.analysis.profile_diff import diff_profiles, render_text
from runners.profile_aggregate import OTHER, Span, aggregate
from tests.cli_inprocess import run_cli
from tests.factories import result_doc, write


def profile(ops: dict[str, tuple[list[float], float]], basis: str = "self_device") -> dict:
    """A guardrail.profile/v1 aggregate from {op: (ms in each step, calls per step)}."""
    n = len(next(iter(ops.values()))[0])
    totals = [sum(ms[i] for ms, _ in ops.values()) for i in range(n)]
    rows = [
        {"name": k, "ms_per_step": sorted(ms)[len(ms) // 2], "calls_per_step": c, "steps_ms": ms}
        for k, (ms, c) in ops.items()
    ]
    return {
        "schema": "guardrail.profile/v1",
        "time_basis": basis,
        "steps": list(range(1, n + 1)),
        "total_ms_per_step": sorted(totals)[n // 2],
        "steps_total_ms": totals,
        "ops": rows,
        "modules": [],
    }


BASE = {
    "aten::mm": ([40.0, 40.4, 39.8, 40.1, 40.2], 60),
    "aten::_flash_attention_forward": ([30.0, 30.2, 29.9, 30.1, 30.0], 20),
    "aten::native_layer_norm": ([8.0, 8.1, 7.9, 8.0, 8.0], 40),
    "aten::gelu": ([5.0, 5.0, 5.1, 4.9, 5.0], 20),
    "aten::add": ([2.0, 2.1, 1.9, 2.0, 2.0], 80),
}


def test_an_injected_slowdown_in_one_op_ranks_first_with_its_size():
    cand = dict(BASE)
    cand["aten::_flash_attention_forward"] = ([42.1, 41.9, 42.0, 42.2, 41.8], 20)  # +12 ms per step
    d = diff_profiles(profile(BASE), profile(cand), change_ms=12.5)
    top = d["contributors"][0]
    assert top["name"] == "aten::_flash_attention_forward"
    assert top["delta_ms"] == pytest.approx(12.0, abs=0.3)
    assert top["share"] == pytest.approx(12.0 / 12.5, abs=0.03)
    assert d["explains"] and d["explained_share"] == pytest.approx(0.96, abs=0.05)
    assert [r["name"] for r in d["contributors"]] == ["aten::_flash_attention_forward"]  # the rest is noise
    assert d["new_ops"] == [] and d["vanished_ops"] == [] and d["calls_changed"] == []
    text = render_text(d)
    assert "top contributors:" in text and "aten::_flash_attention_forward" in text and "+12.0" in text


def test_new_vanished_and_recounted_ops():
    cand = dict(BASE)
    del cand["aten::gelu"]
    cand["aten::silu"] = ([6.0, 6.1, 5.9, 6.0, 6.0], 20)  # gelu -> silu: one vanished, one new
    cand["aten::add"] = ([4.0, 4.1, 3.9, 4.0, 4.0], 160)  # called twice as often
    d = diff_profiles(profile(BASE), profile(cand))
    assert d["new_ops"] == ["aten::silu"] and d["vanished_ops"] == ["aten::gelu"]
    assert d["calls_changed"] == [{"name": "aten::add", "baseline_calls": 80, "candidate_calls": 160}]
    names = [r["name"] for r in d["contributors"]]
    assert names == ["aten::silu", "aten::add"]
    assert d["contributors"][0]["status"] == "new" and d["contributors"][1]["calls_changed"]
    assert d["reductions"][0]["name"] == "aten::gelu" and d["reductions"][0]["status"] == "vanished"
    assert d["change_ms"] == pytest.approx(3.0, abs=0.2)  # the profiles' own change: +6 +2 -5


def test_one_noisy_step_is_not_a_contributor():
    cand = dict(BASE)
    cand["aten::mm"] = ([40.0, 40.3, 90.0, 40.1, 39.9], 60)  # one step hit by something else
    d = diff_profiles(profile(BASE), profile(cand), change_ms=0.0)
    assert d["contributors"] == []
    assert not d["explains"] and "no slowdown to explain" in d["note"]


def test_it_says_when_it_cannot_explain_the_change():
    cand = dict(BASE)
    cand["aten::add"] = ([3.0, 3.1, 2.9, 3.0, 3.0], 80)  # +1 ms of a +20 ms timed regression
    d = diff_profiles(profile(BASE), profile(cand), change_ms=20.0)
    assert d["contributors"][0]["name"] == "aten::add"
    assert not d["explains"] and d["explained_share"] == pytest.approx(0.05, abs=0.01)
    assert "cannot explain the change" in d["note"] and "5%" in d["note"]
    assert "cannot explain" in render_text(d)


def test_different_time_bases_are_named():
    d = diff_profiles(profile(BASE, "self_cpu"), profile(BASE, "self_device"))
    assert "different times" in d["note"]


def test_aggregate_attributes_ops_to_steps_blocks_and_stages():
    spans = [
        Span("guardrail/stage/text_encode", 0, 100),
        Span("aten::mm", 10, 90, 80.0),  # text encoder, outside every step
        Span("guardrail/step#0", 100, 200),  # a warm-up step: not counted
        Span("aten::mm", 110, 190, 5000.0),
    ]
    for i, t0 in enumerate((200, 400, 600), start=1):
        spans += [
            Span(f"guardrail/step#{i}", t0, t0 + 200),
            Span("guardrail/block/transformer_blocks.0", t0 + 5, t0 + 100),
            Span("aten::mm", t0 + 10, t0 + 60, 1000.0 + 100 * i),  # 1.1, 1.2, 1.3 ms
            Span("aten::gelu", t0 + 60, t0 + 90, 500.0),
            Span("aten::gelu", t0 + 120, t0 + 150, 500.0),  # outside the block
            Span("aten::gelu", t0 + 160, t0 + 170, 500.0, thread=2),  # another thread's: not the pipeline's step
            Span("Command Buffer Full", t0 + 170, t0 + 180, 9000.0),  # CUPTI overhead: the host waiting
        ]
    spans += [Span("guardrail/stage/vae_decode", 900, 1000), Span("aten::conv2d", 910, 990, 2000.0)]
    agg = aggregate(spans, [1, 2, 3], time_basis="self_cpu")
    ops = {o["name"]: o for o in agg["ops"]}
    assert agg["steps"] == [1, 2, 3]
    assert ops["aten::mm"]["steps_ms"] == [1.1, 1.2, 1.3] and ops["aten::mm"]["ms_per_step"] == 1.2
    assert ops["aten::gelu"]["ms_per_step"] == 1.0 and ops["aten::gelu"]["calls_per_step"] == 2
    assert "aten::conv2d" not in ops  # decoding is no step's
    assert "Command Buffer Full" not in ops
    assert agg["steps_total_ms"] == [2.1, 2.2, 2.3] and agg["total_ms_per_step"] == 2.2
    assert agg["step_wall_ms"] == [0.2, 0.2, 0.2]
    (block,) = agg["modules"]
    assert block["name"] == "transformer_blocks.0" and block["steps_ms"] == [1.6, 1.7, 1.8]
    assert block["calls_per_step"] == 1
    assert agg["stages_ms"]["text_encode"] == 0.08 and agg["stages_ms"]["vae_decode"] == 2.0


def test_aggregate_keeps_the_costliest_ops_and_sums_the_rest():
    spans = [Span("guardrail/step#0", 0, 10_000)]
    spans += [Span(f"op{i:03d}", i * 10, i * 10 + 5, float(1000 - i)) for i in range(150)]
    agg = aggregate(spans, [0], time_basis="self_cpu")
    assert len(agg["ops"]) == 121 and agg["ops"][0]["name"] == "op000"
    other = agg["ops"][-1]
    assert other["name"] == OTHER and other["ops"] == 30 and other["calls_per_step"] == 30
    assert other["ms_per_step"] == pytest.approx(sum(1000 - i for i in range(120, 150)) / 1000, abs=1e-3)


def _result_file(tmp_path, name, level, prof):
    doc = result_doc(metrics={"denoise_step_latency": [[level] * 5, [level + 0.2] * 5]})
    if prof is not None:
        doc["extra"] = {"profile": prof}
    return write(tmp_path / name, doc)


def test_profile_diff_command_text_json_and_bad_input(tmp_path, capsys):
    cand = dict(BASE)
    cand["aten::_flash_attention_forward"] = ([42.1, 41.9, 42.0, 42.2, 41.8], 20)
    a = _result_file(tmp_path, "a.json", 85.0, profile(BASE))
    b = _result_file(tmp_path, "b.json", 97.0, profile(cand))
    code, out, err = run_cli(capsys, "profile-diff", str(a), str(b), "--format", "json")
    assert code == 0, err
    d = json.loads(out)
    assert d["schema"] == "guardrail.profile-diff/v1" and d["change_ms"] == pytest.approx(12.0)  # timed medians
    assert d["contributors"][0]["name"] == "aten::_flash_attention_forward" and d["explains"]
    code, out, err = run_cli(capsys, "profile-diff", str(a), str(b))
    assert code == 0 and "top contributors:" in out
    bare = _result_file(tmp_path, "c.json", 85.0, None)
    code, out, err = run_cli(capsys, "profile-diff", str(a), str(bare))
    assert code == 2 and "c.json" in err and "extra.profile" in err
    failed = _result_file(tmp_path, "d.json", 85.0, {"error": "RuntimeError: boom"})
    code, out, err = run_cli(capsys, "profile-diff", str(failed), str(b))
    assert code == 2 and "boom" in err
    code, out, err = run_cli(capsys, "profile-diff", str(a), str(b), "--format", "xml")
    assert code == 2 and "--format" in err


def test_the_rerun_plan_profiles_regressions_and_suspects():
    cands = [
        PerfCandidate("w1", "denoise_step_latency", "H100", "regression", repeats_needed=4, candidate_repeats=2),
        PerfCandidate("w2", "denoise_step_latency", "H100", "suspect"),
        PerfCandidate("w3", "denoise_step_latency", "H100", "inconclusive", repeats_needed=4, candidate_repeats=2),
        PerfCandidate("w4", "peak_memory", "H100", "regression", informational=True),
    ]
    plan = {d.workload: d for d in plan_perf_reruns(cands)}
    assert plan["w1"].profile and plan["w1"].to_dict()["profile"] is True
    assert plan["w2"].profile and not plan["w3"].profile and not plan["w4"].profile


def test_the_pr_comment_says_when_the_profiles_cannot_explain_a_regression():
    from guardrail.reports.markdown import render_markdown
    from guardrail.verdicts import VerdictsDoc

    cand = dict(BASE)
    cand["aten::add"] = ([3.0, 3.1, 2.9, 3.0, 3.0], 80)
    d = diff_profiles(profile(BASE), profile(cand), change_ms=20.0)
    row = {
        "workload": "w", "metric": "denoise_step_latency", "hardware": "H100", "unit": "ms", "verdict": "regression",
        "change": 0.2, "baseline": {"runs": 10, "median": 100.0}, "candidate": {"repeats": 2, "median": 120.0},
        "profile_diff": {**d, "contributors": d["contributors"][:5], "modules": []},
    }  # fmt: skip
    doc = VerdictsDoc.model_validate({"schema": "guardrail.verdicts/v1", "verdicts": [row], "status": "failure"})
    md = render_markdown(doc)
    assert "**Top contributors: w**" in md and "- `aten::add`: +1.00 ms per step, 5%" in md
    assert "⚠️ cannot explain the change" in md
    assert "profile_diff" in doc.to_dict()["verdicts"][0]
    bare = VerdictsDoc.model_validate({"schema": "guardrail.verdicts/v1", "verdicts": [{**row, "profile_diff": None}]})
    assert "profile_diff" not in bare.to_dict()["verdicts"][0] and "Top contributors" not in render_markdown(bare)
