"""Each adapter on hand-built files in its format's real layout, and malformed inputs -> one-line InputError
naming the file and the JSON path."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardrail.adapters import FORMATS, AdaptDefaults, adapt, detect_format
from guardrail.errors import InputError
from guardrail.schema import CIInfo, Source

FIX = Path(__file__).parent / "fixtures" / "adapters"


def _load(name: str):
    return json.loads((FIX / name).read_text())


def _adapt(name: str, data=None, **defaults):
    path = FIX / name
    data = _load(name) if data is None else data
    return adapt(path, detect_format(path, data), data, defaults=AdaptDefaults(**defaults))


def _diffusion_record() -> dict:
    """A small diffusion_result record in the newer (`endpoint`) layout."""
    return {
        "test_name": "test_toy_single_device",
        "endpoint": "/v1/videos",
        "timestamp": "20260620-101500",
        "server_params": {"model": "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "serve_args": {"usp": 2}},
        "benchmark_params": {
            "name": "832x480_steps4",
            "task": "t2v",
            "max-concurrency": 1,
            "baseline": {"A3": {"latency_mean": 40.0}, "H100": {"latency_mean": 10.0}},
        },
        "result": {
            "completed_requests": 4,
            "failed_requests": 0,
            "throughput_qps": 0.1,
            "latency_mean": 9.5,
            "latency_p99": 9.9,
            "peak_memory_mb_max": 40000.0,
            "stage_durations_mean": {"WanPipeline.diffuse": 7.5, "queue_wait_ms": 0.4},
        },
        "Model": "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
        "Hardware": "",
        "Task": "t2v",
        "resolution": "832x480",
        "Parallelism": "usp=2",
        "max_concurrency": 1,
        "Cache": "disabled",
        "Quantization": "disabled",
        "offload": "disabled",
        "compile": "enabled",
        "Attn_backend": "FLASH_ATTN",
        "commit_sha": "a" * 40,
        "build_id": "",
        "build_url": "",
        "source_file": "tests/dfx/perf/tests/toy.json",
    }


def _expect(exc: pytest.ExceptionInfo, file: Path | str, field: str) -> None:
    assert exc.value.file == str(file)
    assert exc.value.field == field
    assert "\n" not in str(exc.value) and str(file) in str(exc.value) and field in str(exc.value)


# --- detection --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("vllm_bench_serve_llama.json", "vllm-bench"),
        ("vllm_bench_omni_image.json", "vllm-bench"),
        ("bench_async_chunk_20260615_093000.json", "tts-bench"),
        ("bench_tts_serve_voxcpm.json", "tts-bench"),
        ("pytest_benchmark_saved_data.json", "pytest-benchmark"),
        ("perf_test_case.json", None),  # a test-case definition, not results
    ],
)
def test_detect(name, fmt):
    assert detect_format(FIX / name, _load(name)) == fmt


def test_formats_constant_is_the_public_list():
    assert FORMATS == ("vllm-omni-diffusion", "vllm-bench", "tts-bench", "pytest-benchmark")
    assert detect_format(Path("x.json"), {"alerts": []}) is None
    assert detect_format(Path("diffusion_result_x_20260101-000000.json"), []) == "vllm-omni-diffusion"


# --- vllm-omni-diffusion (hand-built records; the corpus test covers the real files) -----------------------


def test_diffusion_defaults_and_per_hardware_reference_block(tmp_path):
    path = tmp_path / "diffusion_result_toy_20260620-101500.json"
    source = Source(repo="org/fork", commit="b" * 40, branch="main", ci=CIInfo(provider="github-actions", run_id="7"))
    (r,) = adapt(
        path,
        "vllm-omni-diffusion",
        [_diffusion_record()],
        defaults=AdaptDefaults(hardware="A3", source=source),
    )
    assert r.environment.hardware == "A3" and r.environment.device_type == "npu" and r.environment.device_count == 2
    assert r.run.source.commit == "a" * 40  # the file's commit wins over the flag's
    assert r.run.source.repo == "org/fork" and r.run.source.branch == "main"
    assert r.run.source.ci.provider == "github-actions"  # the file has no CI: the environment's fills it
    assert r.metric("stage_mean.queue_wait_ms").unit == "ms"
    assert r.extra["reference_baseline"] == {"A3": {"latency_mean": 40.0}, "H100": {"latency_mean": 10.0}}


def test_diffusion_failed_requests_and_missing_results(tmp_path):
    path = tmp_path / "diffusion_result_toy_20260620-101500.json"
    partial, empty, none = _diffusion_record(), _diffusion_record(), _diffusion_record()
    partial["result"]["failed_requests"] = 1
    empty["result"] = {"completed_requests": 0, "failed_requests": 0, "latency_mean": 0}
    none["result"] = None
    a, b, c = adapt(path, "vllm-omni-diffusion", [partial, empty, none], defaults=AdaptDefaults(hardware="H100"))
    assert a.status == "failed" and a.error.kind == "failed_requests" and a.error.message == "1 of 5 requests failed"
    assert a.metric("latency_mean").repeats == [[9.5]]  # kept, but a non-ok result is never judged
    assert b.status == "failed" and b.error.kind == "no_completed_requests" and b.metrics == []
    assert c.status == "failed" and c.error.kind == "no_result"
    assert a.workload.digest == b.workload.digest == c.workload.digest


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r["result"].update(latency_mean="fast"), "$[1].result.latency_mean"),
        (lambda r: r["result"].update(latency_p99=float("nan")), "$[1].result.latency_p99"),
        (lambda r: r.pop("timestamp"), "$[1].timestamp"),
        (lambda r: r.update(timestamp="yesterday"), "$[1].timestamp"),
        (lambda r: r.pop("test_name"), "$[1].test_name"),
        (lambda r: r["result"].update(stage_durations_mean=[1, 2]), "$[1].result.stage_durations_mean"),
        (
            lambda r: r["result"]["stage_durations_mean"].update(x="slow"),
            "$[1].result.stage_durations_mean['x']",
        ),
        (lambda r: r.update(result="oops"), "$[1].result"),
        (lambda r: r.update(Parallelism={"usp": 2}), "$[1].Parallelism"),
        (lambda r: r.update(benchmark_params=[]), "$[1].benchmark_params"),
    ],
)
def test_diffusion_malformed_names_file_and_field(tmp_path, mutate, field):
    path = tmp_path / "diffusion_result_bad_20260620-101500.json"
    good, bad = _diffusion_record(), _diffusion_record()
    mutate(bad)
    with pytest.raises(InputError) as exc:
        adapt(path, "vllm-omni-diffusion", [good, bad], defaults=AdaptDefaults(hardware="H100"))
    _expect(exc, path, field)


def test_diffusion_without_any_hardware_fails_closed(tmp_path):
    path = tmp_path / "diffusion_result_x_20260620-101500.json"
    with pytest.raises(InputError) as exc:
        adapt(path, "vllm-omni-diffusion", [_diffusion_record()], defaults=AdaptDefaults())
    _expect(exc, path, "$[0].Hardware")
    assert "--hardware" in str(exc.value)


def test_diffusion_top_level_must_be_an_array(tmp_path):
    path = tmp_path / "diffusion_result_x.json"
    with pytest.raises(InputError) as exc:
        adapt(path, "vllm-omni-diffusion", {"test_name": "x"}, defaults=AdaptDefaults())
    _expect(exc, path, "$")


# --- vllm-bench ---------------------------------------------------------------------------------------------


def test_vllm_bench_serve_summaries():
    (r,) = _adapt("vllm_bench_serve_llama.json", hardware="H100")
    assert r.status == "ok"
    assert r.workload.name == "meta-llama/Llama-3.1-8B-Instruct/c16/n200"
    assert r.run.started_at == datetime(2026, 6, 20, 3, 15, 2, tzinfo=UTC)
    assert r.metric("p99_ttft_ms").repeats == [[371.9]] and r.metric("p99_ttft_ms").summary == "p99"
    assert r.metric("median_tpot_ms").repeats == [[22.8]]
    assert r.metric("mean_e2el_ms").unit == "ms"
    assert r.metric("output_throughput").direction == "higher_is_better"
    assert r.metric("std_ttft_ms") is None  # a spread, not a level
    assert r.metric("request_goodput") is None  # null in the file
    assert len(r.metrics) == 16
    assert r.environment.hardware == "H100" and r.extra["hardware_from"] == "defaults"


def test_vllm_bench_omni_image_keys_and_failed_requests():
    (r,) = _adapt("vllm_bench_omni_image.json")
    assert r.environment.hardware == "unknown"  # the format never names it and no --hardware was given
    assert r.status == "failed" and r.error.message == "1 of 10 requests failed"
    assert r.metric("image_throughput").repeats == [[0.1718]] and r.metric("image_throughput").unit == "img/s"
    assert r.metric("mean_denoise_step_latency_ms").repeats == [[118.4]]
    assert r.metric("audio_throughput") is None and r.metric("output_throughput") is None  # zeros
    assert r.extra["request_errors"] == 1
    assert r.workload.name == "qwen-image-t2i/c1/n10"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(mean_ttft_ms="12"), "$.mean_ttft_ms"),
        (lambda d: d.update(date="last tuesday"), "$.date"),
        (lambda d: d.update(completed=None, failed="x"), "$.failed"),
        (lambda d: d.update(model_id={"name": "x"}), "$.model_id"),
    ],
)
def test_vllm_bench_malformed(mutate, field):
    data = _load("vllm_bench_serve_llama.json")
    mutate(data)
    path = FIX / "vllm_bench_serve_llama.json"
    with pytest.raises(InputError) as exc:
        adapt(path, "vllm-bench", data, defaults=AdaptDefaults())
    _expect(exc, path, field)


def test_vllm_bench_needs_a_time(tmp_path):
    data = _load("vllm_bench_serve_llama.json")
    del data["date"]
    path = tmp_path / "serve.json"
    with pytest.raises(InputError) as exc:
        adapt(path, "vllm-bench", data, defaults=AdaptDefaults())
    _expect(exc, path, "$.date")
    (r,) = adapt(tmp_path / "serve_20260102-030405.json", "vllm-bench", data, defaults=AdaptDefaults())
    assert r.run.started_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


# --- tts-bench ----------------------------------------------------------------------------------------------


def test_tts_bench_raw_samples_when_present():
    ok, failed = _adapt("bench_async_chunk_20260615_093000.json", hardware="H100")
    assert ok.run.started_at == datetime(2026, 6, 15, 9, 30, tzinfo=UTC)
    assert ok.workload.name == "async_chunk/c1"
    assert ok.metric("ttfp").repeats == [[148.0, 152.0, 147.0, 159.0]] and ok.metric("ttfp").summary is None
    assert ok.metric("e2e").repeats == [[1490.0, 1520.0, 1509.0, 1561.0]]
    assert ok.metric("mean_ttfp_ms") is None  # the samples replace the summaries
    assert ok.metric("audio_throughput").repeats == [[3.21]]
    assert failed.status == "failed" and failed.metrics == [] and failed.workload.digest != ok.workload.digest


def test_tts_bench_summaries_and_created_at():
    (r,) = _adapt("bench_tts_serve_voxcpm.json")
    assert r.run.started_at == datetime(2026, 6, 16, 8, 0, tzinfo=UTC)
    assert r.workload.name == "openbmb/VoxCPM2/default/c2"
    assert r.metric("p90_ttfp_ms").repeats == [[230.0]] and r.metric("p90_ttfp_ms").summary == "p90"
    assert r.metric("median_rtf").unit == "x"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d[0].pop("concurrency"), "$[0].concurrency"),
        (lambda d: d[0]["per_request"][1].update(ttfp_ms=None), "$[0].per_request[1].ttfp_ms"),
        (lambda d: d[0].update(per_request={"a": 1}), "$[0].per_request"),
        (lambda d: d[0].update(audio_throughput=[1]), "$[0].audio_throughput"),
        (lambda d: d.append("x"), "$[2]"),
    ],
)
def test_tts_bench_malformed(mutate, field):
    data = _load("bench_async_chunk_20260615_093000.json")
    mutate(data)
    path = FIX / "bench_async_chunk_20260615_093000.json"
    with pytest.raises(InputError) as exc:
        adapt(path, "tts-bench", data, defaults=AdaptDefaults())
    _expect(exc, path, field)


def test_tts_bench_without_a_time(tmp_path):
    path = tmp_path / "bench_async_chunk.json"
    with pytest.raises(InputError) as exc:
        adapt(path, "tts-bench", _load("bench_async_chunk_20260615_093000.json"), defaults=AdaptDefaults())
    _expect(exc, path, "$")


# --- pytest-benchmark ---------------------------------------------------------------------------------------


def test_pytest_benchmark_raw_data_else_mean():
    raw, summary = _adapt("pytest_benchmark_saved_data.json")
    assert raw.workload.name == "bench/test_stats.py::test_bootstrap_ci[1000]" and raw.workload.family == "stats"
    assert raw.metric("time").repeats == [[0.0121, 0.0128, 0.0124, 0.0139, 0.013]]
    assert raw.metric("time").summary is None and raw.metric("time").unit == "s"
    assert summary.metric("time").repeats == [[4.52e-05]] and summary.metric("time").summary == "mean"
    assert raw.environment.hardware == "Intel(R) Xeon(R) Platinum 8480+" and raw.environment.device_type == "cpu"
    assert raw.run.source.commit == "3f1c2a9be0d4c61f0b1e5a7d9c8b6a5f4e3d2c1b" and raw.run.source.branch == "main"
    assert raw.run.started_at == datetime(2026, 6, 20, 9, 5, 31, 118422, tzinfo=UTC)
    assert raw.environment.software["python"] == "3.11.9"
    assert raw.extra["stats"]["rounds"] == 5
    assert raw.workload.digest != summary.workload.digest


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["benchmarks"][0]["stats"]["data"].__setitem__(2, "x"), "$.benchmarks[0].stats.data[2]"),
        (lambda d: d["benchmarks"][1].pop("stats"), "$.benchmarks[1].stats"),
        (lambda d: d["benchmarks"][1]["stats"].pop("mean"), "$.benchmarks[1].stats.mean"),
        (lambda d: d.update(datetime="soon"), "$.datetime"),
        (
            lambda d: d["benchmarks"][0].pop("fullname") and d["benchmarks"][0].pop("name"),
            "$.benchmarks[0].fullname",
        ),
        (lambda d: d.update(commit_info=[]), "$.commit_info"),
    ],
)
def test_pytest_benchmark_malformed(mutate, field):
    data = copy.deepcopy(_load("pytest_benchmark_saved_data.json"))
    mutate(data)
    path = FIX / "pytest_benchmark_saved_data.json"
    with pytest.raises(InputError) as exc:
        adapt(path, "pytest-benchmark", data, defaults=AdaptDefaults())
    _expect(exc, path, field)


def test_unknown_format_is_an_input_error():
    with pytest.raises(InputError) as exc:
        adapt(FIX / "x.json", "junit-ish", [], defaults=AdaptDefaults())
    assert exc.value.field == "--format"


@pytest.mark.parametrize(
    ("hardware", "device_type"),
    [
        ("H100", "cuda"),
        ("H20", "cuda"),
        ("L40S", "cuda"),
        ("A100", "cuda"),
        ("A3", "npu"),
        ("A2", "npu"),
        ("910B4", "npu"),
        ("Ascend910B3", "npu"),
        ("MI300", "rocm"),
        ("B60", "xpu"),
        ("cpu", "cpu"),
        ("S5000", "unknown"),
    ],
)
def test_device_type_from_hardware_labels(hardware, device_type):
    from guardrail.adapters.hardware import device_type_of, normalize_hardware

    assert device_type_of(hardware) == device_type
    assert normalize_hardware("h200") == "H200" and normalize_hardware("Ascend910B3") == "Ascend910B3"


def test_a_result_the_schema_refuses_is_an_input_error_naming_the_record(tmp_path):
    path = tmp_path / "serve_20260101-000000.json"
    data = {"date": "20260101-000000", "completed": 1, "duration": 1.0, "request_throughput": 1.0}
    with pytest.raises(InputError) as exc:
        adapt(path, "vllm-bench", data, defaults=AdaptDefaults(lane=""))
    _expect(exc, path, "$")
    assert "$.run.lane" in str(exc.value)
