"""The whole vLLM-Omni nightly corpus through the adapters: counts, spot values read by hand, determinism."""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardrail.adapters import AdaptDefaults, adapt, detect_format
from guardrail.ingest import content_hash, load_documents
from guardrail.schema import Result, parse_result

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("GUARDRAIL_CORPUS") or REPO.parent / "shared" / "corpus")
NIGHTLY = CORPUS / "vllm-omni-nightly"

pytestmark = pytest.mark.skipif(
    not NIGHTLY.is_dir(), reason=f"corpus not found at {CORPUS} (set GUARDRAIL_CORPUS to its folder)"
)


def _adapt_file(path: Path, defaults: AdaptDefaults | None = None) -> tuple[str | None, list[Result]]:
    data = json.loads(path.read_bytes())
    fmt = detect_format(path, data)
    if fmt is None:
        return None, []
    return fmt, adapt(path, fmt, data, defaults=defaults or AdaptDefaults())


@pytest.fixture(scope="module")
def corpus() -> dict[Path, tuple[str | None, list[Result]]]:
    return {p: _adapt_file(p) for p in sorted(CORPUS.rglob("*.json"))}


def _one(corpus, rel: str) -> list[Result]:
    fmt, results = corpus[NIGHTLY / rel]
    assert fmt is not None
    return results


def test_every_file_is_recognised_except_the_alerts(corpus):
    formats = Counter(fmt for fmt, _ in corpus.values())
    assert formats == {"vllm-omni-diffusion": 124, "tts-bench": 7, None: 1}
    assert [p.name for p, (fmt, _) in corpus.items() if fmt is None] == ["alerts.json"]


def test_counts_of_results_and_series(corpus):
    results = [r for _, rs in corpus.values() for r in rs]
    assert len(results) == 283  # 276 diffusion records + 7 TTS runs
    assert Counter(r.status for r in results) == {"ok": 282, "failed": 1}
    diffusion = [r for r in results if r.extra["adapter"] == "vllm-omni-diffusion"]
    assert len({r.workload.digest for r in diffusion}) == 25
    assert len({(r.workload.digest, r.environment.hardware) for r in results}) == 27
    assert len({(r.workload.digest, m.name, r.environment.hardware) for r in results for m in r.metrics}) == 370
    assert Counter(r.environment.hardware for r in diffusion) == {"H100": 200, "H200": 76}
    assert {r.workload.family for r in diffusion} == {"wan2.2", "qwen-image-edit", "hunyuan-image-3"}
    # Every summary is one value from one run, and says which summary it is.
    assert all(m.summary and m.repeats == [[m.repeats[0][0]]] for r in diffusion for m in r.metrics)


def test_spot_values_wan22_buildkite_11865(corpus):
    results = _one(corpus, "buildkite_nightly_raw/11865/diffusion_result_test_wan22_i2v_vllm_omni_20260628-185617.json")
    assert len(results) == 3
    r = results[0]
    assert r.workload.name == "test_wan22_i2v_single_device/832x480_frames81_steps4"
    assert r.workload.family == "wan2.2"
    assert r.workload.spec["Parallelism"] == "none" and r.workload.spec["Attn_backend"] == "FLASH_ATTN"
    assert r.run.started_at == datetime(2026, 6, 28, 18, 59, 13, tzinfo=UTC)
    assert r.run.source.commit == "1b318d11d17804c54c6ffa482efdd7abcb03657c"
    assert r.run.source.ci.provider == "buildkite" and r.run.source.ci.run_id == "11865"
    assert r.environment.hardware == "H100" and r.extra["hardware_from"] == "buildkite-nightly-fallback"
    assert r.metric("latency_mean").repeats == [[22.63082828386687]]
    assert r.metric("latency_mean").unit == "s" and r.metric("latency_mean").summary == "mean"
    assert r.metric("throughput_qps").repeats == [[0.04418716657653869]]
    assert r.metric("throughput_qps").direction == "higher_is_better"
    assert r.metric("peak_memory_mb_max").repeats == [[76386.0]]
    assert r.metric("stage_mean.Wan22I2VPipeline.diffuse").repeats == [[15.256279711099342]]
    assert r.metric("stage_mean.Wan22I2VPipeline.diffuse").unit == "s"
    assert r.metric("stage_mean.stage_0_gen_ms").unit == "ms"
    assert r.metric("latency_p50") is None  # a copy of latency_median, judged once
    assert r.extra["reference_baseline"] == {
        "throughput_qps": 0.0465,
        "latency_mean": 21.4354,
        "peak_memory_mb_mean": 72557.58,
    }


def test_spot_values_old_backend_layout_build_9358(corpus):
    results = _one(
        corpus,
        "buildkite_nightly_raw/9358/diffusion_result_test_qwen_image_edit_vllm_omni_20260510-184415.json",
    )
    assert len(results) == 6
    r = results[0]
    assert r.workload.name == "test_qwen_image_edit_single_device/512x512_steps20_i2i"
    assert r.extra["endpoint"] == "vllm-omni"
    assert r.run.started_at == datetime(2026, 5, 10, 18, 46, 13, tzinfo=UTC)
    assert r.run.source.commit == "857356d5b72f4b27a1f0a5f795f21463f190163b"
    assert r.metric("latency_mean").repeats == [[9.596205637324601]]
    assert r.metric("throughput_qps").repeats == [[0.10420558967355549]]
    assert r.metric("stage_mean.QwenImageEditPipeline.diffuse").repeats == [[8.766638267505915]]
    # The old layout keys the same series as the new one.
    newer = _one(
        corpus,
        "buildkite_nightly_raw/11865/diffusion_result_test_qwen_image_edit_vllm_omni_20260628-185606.json",
    )
    assert r.workload.digest in {x.workload.digest for x in newer}


def test_spot_values_hunyuan_local_h200(corpus):
    (r,) = _one(
        corpus,
        "local_nightly_raw/manual_20260620/diffusion_result_test_hunyuan_image_tp4_20260620-121319.json",
    )
    assert r.environment.hardware == "H200" and r.environment.device_type == "cuda"
    assert r.environment.device_count == 4
    assert r.run.source.ci is None and r.run.source.commit == "cead615288028ce0bdf5f61c4bdb1dd65f762fb4"
    assert r.run.started_at == datetime(2026, 6, 20, 12, 14, 7, tzinfo=UTC)
    assert r.workload.family == "hunyuan-image-3"
    assert r.metric("latency_p99").repeats == [[2.5982079697027802]]
    assert r.metric("peak_memory_mb_max").repeats == [[66410.0]]
    assert r.metric("stage_mean.HunyuanImage3Pipeline.model.forward").repeats == [[1.370778463035822]]


def test_it2i_records_without_memory_or_stages(corpus):
    (r,) = _one(
        corpus,
        "local_nightly_raw/manual_20260628/diffusion_result_test_hunyuan_image3_it2i_20260628-120516.json",
    )
    assert r.metric("latency_mean").repeats == [[41.4023918431291]]
    names = {m.name for m in r.metrics}
    assert not any(n.startswith("peak_memory") or n.startswith("stage_mean.") for n in names)
    assert r.extra["reference_baseline"]["latency_p99"] == 101.852


def test_spot_values_tts(corpus):
    (r,) = _one(
        corpus,
        "buildkite_nightly_raw/11572/result_test_qwen3_tts_base_seed-tts_1_20_inna_outna_20260618-202937.json",
    )
    assert r.workload.name == "test_qwen3_tts_base_seed-tts_1_20_inna_outna"
    assert r.workload.family == "qwen3-tts"
    assert r.run.started_at == datetime(2026, 6, 18, 20, 30, 44, tzinfo=UTC)
    assert r.metric("median_audio_ttfp_ms").repeats == [[146.72267402056605]]
    assert r.metric("mean_e2el_ms").repeats == [[803.6919126170687]]
    assert r.metric("median_audio_rtf").unit == "x"
    assert r.metric("audio_throughput").direction == "higher_is_better"
    assert r.metric("image_throughput") is None and r.metric("rtfx") is None  # zeros: not produced
    assert r.metric("mean_audio_duration_s") is None  # describes the output, not the speed
    assert r.extra["reference_baseline"] == {"median_audio_ttfp_ms": 139.9434, "median_audio_rtf": 0.1683}


def test_failed_tts_run_stays_in_its_series(corpus):
    (failed,) = _one(
        corpus,
        "buildkite_nightly_raw/10912/result_test_qwen3_tts_customvoice_seed-tts-design_1_20_inna_outna_20260602-221546.json",
    )
    (ok,) = _one(
        corpus,
        "buildkite_nightly_raw/11572/result_test_qwen3_tts_customvoice_seed-tts-design_1_20_inna_outna_20260618-203728.json",
    )
    assert failed.status == "failed" and failed.error.kind == "no_completed_requests" and failed.metrics == []
    assert failed.run.started_at == datetime(2026, 6, 2, 22, 15, 46, tzinfo=UTC)  # from the file name
    assert failed.workload.digest == ok.workload.digest


def test_hardware_flag_fills_only_what_the_file_leaves_empty():
    tts = (
        NIGHTLY
        / "buildkite_nightly_raw/11572"
        / "result_test_qwen3_tts_base_seed-tts_1_20_inna_outna_20260618-202937.json"
    )
    _, (r,) = _adapt_file(tts, AdaptDefaults(hardware="H100", lane="extended"))
    assert r.environment.hardware == "H100" and r.environment.device_type == "cuda"
    assert r.run.lane == "extended"
    local = NIGHTLY / "local_nightly_raw/manual_20260620/diffusion_result_test_hunyuan_image_tp4_20260620-121319.json"
    _, (h,) = _adapt_file(local, AdaptDefaults(hardware="A3"))
    assert h.environment.hardware == "H200"  # the file says h200: the file wins


def test_results_are_valid_documents_and_deterministic(corpus):
    path = NIGHTLY / "buildkite_nightly_raw/10037/diffusion_result_test_wan22_i2v_vllm_omni_20260519-190531.json"
    _, first = corpus[path]
    _, again = _adapt_file(path)
    assert [content_hash(r) for r in first] == [content_hash(r) for r in again]
    for r in first:  # what the adapter produced round-trips through the result-file contract
        assert parse_result(r.to_json(), file="roundtrip") == r


def test_lead_ingest_reads_the_whole_corpus_by_detection():
    paths = sorted(p for p in CORPUS.rglob("*.json") if p.name != "alerts.json")
    docs = load_documents(paths)
    assert len(docs) == 283
    assert len({d.content_hash for d in docs}) == 283
    assert Counter(d.format for d in docs) == {"vllm-omni-diffusion": 276, "tts-bench": 7}
