"""`guardrail run --profile` on CPU with a real tiny pipeline: the aggregates and the trace file, the timed repeats
unchanged (same series, the profiler process not among them), and a candidate really slower in one op (a test-only
sitecustomize adds GELUs inside every FeedForward) named first by the diff."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import yaml

pytest.importorskip("diffusers")
pytest.importorskip("torch")

from guardrail.analysis.profile_diff import diff_profiles  # noqa: E402
from guardrail.schema import load_result  # noqa: E402
from tests.cli_inprocess import run_cli  # noqa: E402

pytestmark = [pytest.mark.runners, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent
SOURCE = "qwen-image-edit-2511-1024"
NAME = "profiled-tiny"
INJECT = ROOT / "tests" / "data" / "profile_inject"


@pytest.fixture(scope="module")
def workloads(tmp_path_factory) -> Path:
    wdir = tmp_path_factory.mktemp("w")
    data = yaml.safe_load((ROOT / "workloads" / f"{SOURCE}.yaml").read_text())
    data["name"], data["lanes"] = NAME, ["presubmit"]
    (wdir / f"{NAME}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return wdir


def _run(workloads: Path, out: Path, *, profile: bool) -> Path:
    from runners import run_lane

    (f,) = run_lane("presubmit", names=[NAME], device="cpu", scale="tiny", repeats=1, out_dir=out, progress=False,
                    workloads_dir=workloads, profile=profile)  # fmt: skip
    return f


@pytest.fixture(scope="module")
def profiled(workloads, tmp_path_factory) -> Path:
    return _run(workloads, tmp_path_factory.mktemp("a"), profile=True)


def test_profile_aggregates_and_trace_beside_the_result(profiled):
    r = load_result(profiled)
    assert r.status == "ok"
    p = r.extra["profile"]
    assert "error" not in p, p
    assert p["schema"] == "guardrail.profile/v1" and p["time_basis"] == "self_cpu" and p["device"] == "cpu"
    assert p["profiler"] == "torch.profiler" and p["steps"] and p["warmup_steps"] >= 1
    assert p["total_ms_per_step"] > 0 and len(p["steps_total_ms"]) == len(p["steps"])
    names = {o["name"] for o in p["ops"]}
    assert {"aten::addmm", "aten::gelu"} <= names  # the transformer's linear layers and its feed-forward
    assert all(len(o["steps_ms"]) == len(p["steps"]) and o["calls_per_step"] >= 0 for o in p["ops"])
    # the ops' medians add up to about the step's (medians of parts are not the median of the sum)
    assert sum(o["ms_per_step"] for o in p["ops"]) == pytest.approx(p["total_ms_per_step"], rel=0.5)
    blocks = {b["name"] for b in p["modules"]}
    assert "transformer_blocks.0" in blocks and p["blocks_instrumented"] == len(blocks)
    assert all(b["calls_per_step"] >= 1 for b in p["modules"])  # one forward per block per step (or 2 with CFG)
    assert p["stages_ms"]["text_encode"] > 0 and p["stages_ms"]["vae_decode"] > 0
    trace = profiled.parent / p["trace"]  # relative to the result file
    assert trace.name.endswith(".trace.json.gz") and p["trace_bytes"] == trace.stat().st_size
    events = json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]
    assert any(e.get("name", "").startswith("guardrail/step#") for e in events)
    assert any(e.get("name", "").startswith("guardrail/block/") for e in events)
    assert (profiled.parent / "logs" / f"{NAME}.profile.log").exists()


def test_timed_repeats_are_the_same_series_with_and_without_profile(profiled, workloads, tmp_path):
    plain = load_result(_run(workloads, tmp_path, profile=False))
    r = load_result(profiled)
    assert r.workload.digest == plain.workload.digest and r.workload.spec == plain.workload.spec
    assert {m.name for m in r.metrics} == {m.name for m in plain.metrics}
    for m in r.metrics:
        other = plain.metric(m.name)
        assert other is not None and len(m.repeats) == len(other.repeats) == 1  # the profiler is no repeat
        assert [len(x) for x in m.repeats] == [len(x) for x in other.repeats]
    assert len(r.extra["process_wall_s"]) == 1 and r.extra["repeats_requested"] == 1
    fp, fp_plain = r.extra["output_fingerprint"], plain.extra["output_fingerprint"]
    assert fp[0]["sha256_u8"] == fp_plain[0]["sha256_u8"]  # the same generation was timed
    assert "profile" not in plain.extra
    assert not list((tmp_path / "logs").glob("*.profile.log")) and not list(tmp_path.glob("*.trace.json.gz"))


def test_a_slower_op_in_the_candidate_is_named_first(profiled, workloads, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", str(INJECT))
    monkeypatch.setenv("GUARDRAIL_TEST_SLOW_GELU", "6")  # 6 more GELUs of 1M elements per FeedForward forward
    cand = _run(workloads, tmp_path, profile=True)
    base_p = load_result(profiled).extra["profile"]
    cand_p = load_result(cand).extra["profile"]
    d = diff_profiles(base_p, cand_p)
    top = d["contributors"][0]
    assert top["name"] == "aten::gelu", d["contributors"][:3]
    assert top["calls_changed"] and top["candidate_calls"] > top["baseline_calls"]
    assert top["delta_ms"] > 0.5 * sum(r["delta_ms"] for r in d["contributors"])  # most of what grew
    code, out, err = run_cli(capsys, "profile-diff", str(profiled), str(cand), "--format", "json")
    assert code == 0, err
    assert json.loads(out)["contributors"][0]["name"] == "aten::gelu"
