"""Reference baselines: vLLM-Omni test-case `baseline` blocks -> rows keyed like adapter series -> YAML."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from guardrail.adapters import AdaptDefaults, adapt
from guardrail.adapters import vllm_omni_diffusion as diffusion
from guardrail.errors import InputError
from guardrail.ingest.reference import load_reference_yaml, matches, write_reference_yaml
from guardrail.ingest.reference_import import config_dims, import_test_cases, load_reference_baselines

REPO = Path(__file__).resolve().parents[1]
FIX = Path(__file__).parent / "fixtures" / "adapters"
CASES = FIX / "perf_test_case.json"
CORPUS = Path(os.environ.get("GUARDRAIL_CORPUS") or REPO.parent / "shared" / "corpus")
NIGHTLY = CORPUS / "vllm-omni-nightly"
needs_corpus = pytest.mark.skipif(not NIGHTLY.is_dir(), reason=f"corpus not found at {CORPUS}")


def _rows(refs, workload, hardware=None):
    return {
        (r.metric, r.dims.get("max_concurrency")): r.value
        for r in refs
        if r.workload == workload and r.hardware == hardware
    }


def test_per_hardware_blocks_become_one_row_per_hardware():
    refs = load_reference_baselines(CASES)
    name = "test_toy_t2i_tp2/512x512_steps4"
    assert _rows(refs, name, "H100") == {("latency_mean", "1"): 1.5, ("throughput_qps", "1"): 0.66}
    assert _rows(refs, name, "A3") == {("latency_mean", "1"): 3.25}
    r = next(r for r in refs if r.workload == name)
    assert r.dims["Parallelism"] == "tensor-parallel-size=2" and r.dims["Cache"] == "cache_dit"
    assert r.dims["compile"] == "disabled"  # enforce-eager
    assert "Attn_backend" not in r.dims  # set by the CI environment, not the config
    assert r.unit == "s" and r.direction == "lower_is_better" and r.test_name == "test_toy_t2i_tp2"


def test_sweeps_flat_blocks_and_marks():
    refs = load_reference_baselines(CASES)
    # A flat block in a case whose marks pin two hardware kinds has no hardware of its own ...
    assert _rows(refs, "test_toy_t2i_tp2/1024x1024_sweep", None) == {
        ("latency_mean", "1"): 6.0,
        ("throughput_qps", "1"): 0.16,
        ("latency_mean", "4"): 9.5,
        ("throughput_qps", "4"): 0.42,
    }
    # ... unless the importer names a default; a case that pins one hardware uses it.
    with_default = load_reference_baselines(CASES, default_hardware="H100")
    assert _rows(with_default, "test_toy_t2i_tp2/1024x1024_sweep", "H100")[("latency_mean", "4")] == 9.5
    single = [r for r in refs if r.workload == "test_toy_t2i_single/512x512_steps4"]
    assert {r.hardware for r in single} == {"H200"} and single[0].dims["Attn_backend"] == "SDPA"
    assert not any("disabled_case" in r.workload for r in refs)
    tts = {(r.workload, r.metric): (r.value, r.unit, r.direction) for r in refs if r.test_name == "test_toy_tts"}
    assert tts == {
        ("test_toy_tts_seed-tts_1_20_inna_outna", "median_audio_ttfp_ms"): (140.0, "ms", "lower_is_better"),
        ("test_toy_tts_seed-tts_1_20_inna_outna", "audio_throughput"): (5.5, "audio_s/s", "higher_is_better"),
        ("test_toy_tts_seed-tts_8_80_inna_outna", "median_audio_ttfp_ms"): (230.0, "ms", "lower_is_better"),
        ("test_toy_tts_seed-tts_8_80_inna_outna", "audio_throughput"): (
            23.5,
            "audio_s/s",
            "higher_is_better",
        ),
    }


def test_yaml_roundtrip_one_file_per_test_case(tmp_path):
    refs = load_reference_baselines(CASES, source="tests/dfx/perf/tests/toy.json", default_hardware="H100")
    files = write_reference_yaml(refs, tmp_path, repo="org/repo", commit="c" * 40)
    assert [f.name for f in files] == [
        "test_toy_t2i_single.yaml",
        "test_toy_t2i_tp2.yaml",
        "test_toy_tts.yaml",
    ]
    text = files[1].read_text()
    assert text.startswith("# Reference baselines for vLLM-Omni perf test case test_toy_t2i_tp2.\n")
    assert f"# Source: org/repo: tests/dfx/perf/tests/toy.json @ {'c' * 40}" in text
    back = load_reference_yaml(tmp_path)
    key = lambda r: (r.workload, r.metric, r.hardware, r.dims.get("max_concurrency"))  # noqa: E731
    assert sorted((key(r), r.value, r.unit) for r in back) == sorted((key(r), r.value, r.unit) for r in refs)
    assert {r.test_name for r in back} == {"test_toy_t2i_single", "test_toy_t2i_tp2", "test_toy_tts"}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([{"benchmark_params": []}], "$[0].test_name"),
        (
            [{"test_name": "t", "benchmark_params": [{"name": "n", "baseline": [1, 2]}]}],
            "$[0].benchmark_params[0].baseline",
        ),
        ([{"test_name": "t", "benchmark_params": ["x"]}], "$[0].benchmark_params[0]"),
        ([{"foo": 1}], "$[0]"),
        ("just a string", "$"),
    ],
)
def test_malformed_test_cases(tmp_path, data, field):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as exc:
        load_reference_baselines(path)
    assert exc.value.file == str(path) and exc.value.field == field


def test_bad_yaml_is_an_input_error(tmp_path):
    (tmp_path / "x.yaml").write_text("schema: something-else\n")
    with pytest.raises(InputError) as exc:
        load_reference_yaml(tmp_path)
    assert exc.value.field == "$.schema"


@needs_corpus
def test_config_dims_reproduce_the_writers_report_columns_for_every_corpus_record():
    """The dims derived from a config equal the adapter's spec (which reads the report columns)."""
    checked = 0
    for f in sorted(NIGHTLY.rglob("diffusion_result_*.json")):
        records = json.loads(f.read_bytes())
        results = adapt(f, "vllm-omni-diffusion", records, defaults=AdaptDefaults(hardware="H100"))
        for rec, result in zip(records, results, strict=True):
            sp, bp = rec["server_params"], rec["benchmark_params"]
            dims = config_dims(rec["test_name"], sp["model"], sp.get("serve_args") or {}, bp, bp.get("max-concurrency"))
            assert dims == {k: v for k, v in result.workload.spec.items() if k in dims}, f.name
            assert set(result.workload.spec) - set(dims) == {"Attn_backend"}
            checked += 1
    assert checked == 276


@needs_corpus
def test_corpus_baseline_blocks_when_the_repo_is_unreachable():
    f = NIGHTLY / "buildkite_nightly_raw/11865/diffusion_result_test_wan22_i2v_vllm_omni_20260628-185617.json"
    refs = load_reference_baselines(f)
    single = {r.metric: r.value for r in refs if r.workload.startswith("test_wan22_i2v_single_device/")}
    assert single == {"throughput_qps": 0.0465, "latency_mean": 21.4354, "peak_memory_mb_mean": 72557.58}
    assert {r.hardware for r in refs} == {"H100"}  # Buildkite CUDA nightly
    local = NIGHTLY / "local_nightly_raw/manual_20260620/diffusion_result_test_hunyuan_image_tp4_20260620-121319.json"
    assert {r.hardware for r in load_reference_baselines(local)} == {"H200"}
    tts = (
        NIGHTLY
        / "buildkite_nightly_raw/11572"
        / "result_test_qwen3_tts_base_seed-tts_1_20_inna_outna_20260618-202937.json"
    )
    assert {(r.workload, r.metric, r.value) for r in load_reference_baselines(tts)} == {
        ("test_qwen3_tts_base_seed-tts_1_20_inna_outna", "median_audio_ttfp_ms", 139.9434),
        ("test_qwen3_tts_base_seed-tts_1_20_inna_outna", "median_audio_rtf", 0.1683),
    }


def test_committed_reference_yaml_loads_and_carries_per_hardware_values():
    refs = load_reference_yaml(REPO / "baselines" / "reference")
    assert len(refs) >= 300
    usp2 = {
        (r.hardware, r.metric): r.value
        for r in refs
        if r.workload == "test_wan22_i2v_usp2_vae_patch2_hsdp_slicing/832x480_frames81_steps4"
    }
    assert usp2[("H100", "latency_mean")] == 18.9415 and usp2[("A3", "latency_mean")] == 65.5305
    for f in (REPO / "baselines" / "reference").glob("*.yaml"):
        head = f.read_text().splitlines()[:3]
        assert head[0].startswith("# Reference baselines") and head[1].startswith("# Source: "), f.name
        assert " @ " in head[1], f.name  # cites the commit


@needs_corpus
def test_committed_references_match_corpus_series_and_fail_closed_elsewhere():
    refs = load_reference_yaml(REPO / "baselines" / "reference")
    f = (
        NIGHTLY
        / "buildkite_nightly_raw/11865"
        / "diffusion_result_test_qwen_image_edit_2511_vllm_omni_20260628-185828.json"
    )
    results = adapt(f, "vllm-omni-diffusion", json.loads(f.read_bytes()), defaults=AdaptDefaults())
    single = next(
        r for r in results if r.workload.name == "test_qwen_image_edit_2511_single_device/512x512_steps20_i2i_2img"
    )
    hits = {x.metric: x.value for x in refs if matches(x, single)}
    assert hits["latency_mean"] > 0 and hits.keys() >= {"latency_mean", "throughput_qps"}
    local = NIGHTLY / "local_nightly_raw/manual_20260620/diffusion_result_test_hunyuan_image_tp4_20260620-121319.json"
    (h200,) = adapt(local, "vllm-omni-diffusion", json.loads(local.read_bytes()), defaults=AdaptDefaults())
    assert not [x for x in refs if matches(x, h200)]  # the H100 reference never stands in for H200
    assert diffusion.workload_name("t", None) == "t"


def test_import_test_cases_earlier_source_wins_per_test_case(tmp_path):
    newer = tmp_path / "newer.json"
    newer.write_text(
        json.dumps(
            [
                {
                    "test_name": "test_toy_t2i_single",
                    "server_params": {
                        "model": "Org/Toy-Image",
                        "serve_args": {"diffusion-attention-backend": "SDPA"},
                    },
                    "benchmark_params": [
                        {
                            "name": "512x512_steps4",
                            "task": "t2i",
                            "width": 512,
                            "height": 512,
                            "max-concurrency": 1,
                            "baseline": {"H200": {"latency_mean": 1.75}},
                        }
                    ],
                }
            ]
        )
    )
    out = tmp_path / "out"
    files = import_test_cases(
        [(newer, "tests/newer.json", "org/up", "1" * 40), (CASES, "tests/old.json", "org/fork", "2" * 40)],
        out,
    )
    assert [f.name for f in files] == [
        "test_toy_t2i_single.yaml",
        "test_toy_t2i_tp2.yaml",
        "test_toy_tts.yaml",
    ]
    refs = load_reference_yaml(out)
    single = [(r.hardware, r.metric, r.value) for r in refs if r.test_name == "test_toy_t2i_single"]
    assert single == [("H200", "latency_mean", 1.75)]  # the older file's flat 2.0 is not mixed in
    assert "org/up: tests/newer.json @ " + "1" * 40 in (out / "test_toy_t2i_single.yaml").read_text()
    assert "org/fork: tests/old.json" in (out / "test_toy_t2i_tp2.yaml").read_text()
