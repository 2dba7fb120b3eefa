"""Optimisation options on tiny configs of the real pipelines (CPU): regional compile and its compile time,
a compile failure as compile_error, cache-dit's own counters and output equivalence, attention backends
applied through diffusers' API (or refused), MindIE-SD refused off an NPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("diffusers")
pytest.importorskip("torch")

from guardrail.schema import load_result  # noqa: E402
from runners.options import OptionError, apply_attention, apply_compile, is_compile_failure  # noqa: E402
from runners.spec import Options  # noqa: E402
from runners.worker import classify  # noqa: E402

pytestmark = [pytest.mark.runners]
GUARDRAIL = str(Path(sys.executable).parent / "guardrail")
WORKLOADS = Path(__file__).resolve().parent.parent / "workloads"
CACHE = "qwen-image-edit-2511-1024-cache-dit"


def _copy(wdir: Path, source: str, name: str, edit=None) -> None:
    data = yaml.safe_load((WORKLOADS / f"{source}.yaml").read_text())
    data["name"] = name
    data["lanes"] = ["presubmit"]
    if edit:
        edit(data)
    (wdir / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _run(wdir: Path, out: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [GUARDRAIL, "run", "--lane", "presubmit", "--device", "cpu", "--scale", "tiny", "--repeats", "1"]
        + ["--out", str(out), "--workloads-dir", str(wdir), "--quiet"],
        capture_output=True,
        text=True,
        timeout=420,
        env={**os.environ, **(env or {})},
    )


def _compile_options(d: dict) -> None:
    d["tiny"]["options"] = {"compile": "inductor"}
    d["tiny"]["warmup_generations"] = 1


# --- compile ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_regional_compile_times_outside_the_compiled_blocks_and_records_compile_time(tmp_path):
    wdir = tmp_path / "w"
    wdir.mkdir()
    _copy(wdir, "wan22-ti2v-5b-720p", "wan-compiled", _compile_options)
    # a fresh Inductor cache: a warm one would skip the compiling that compile_time measures
    r = _run(wdir, tmp_path / "o", {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")})
    assert r.returncode == 0, r.stdout + r.stderr
    res = load_result(next((tmp_path / "o").glob("*.json")))
    assert res.status == "ok", res.error
    applied = res.extra["applied"]
    assert applied["compile"] == "inductor" and applied["compile_scope"] == "regional"
    assert applied["compiled_blocks"] == 4  # the tiny transformer's four WanTransformerBlocks
    steps = res.metric("denoise_step_latency").repeats[0]
    assert len(steps) == 30 and all(s > 0 for s in steps)  # every step's events were recorded
    compile_s = res.metric("compile_time").repeats[0][0]
    info = res.extra["compile"][0]
    # compiling happened in the warm-up generation: its first step is far slower than a steady one
    assert compile_s > 0.5 and info["warmup_steps_ms"][0] > 20 * info["steady_step_median_ms"]
    assert compile_s == pytest.approx(
        sum(max(0.0, s - info["steady_step_median_ms"]) for s in info["warmup_steps_ms"]) / 1000, rel=1e-3
    )
    # the outer forward (where the timing hooks sit) was not traced: one frame compiled, the block's
    assert info["dynamo"]["frames"]["ok"] == 1


@pytest.mark.slow
def test_a_compile_failure_is_an_infra_error_of_kind_compile_error_naming_the_option(tmp_path):
    wdir = tmp_path / "w"
    wdir.mkdir()
    _copy(wdir, "wan22-ti2v-5b-720p", "wan-compile-fails", _compile_options)
    # Inductor's CPU code generation needs a C++ compiler: without one, compiling fails at the first forward
    r = _run(wdir, tmp_path / "o", {"CXX": "/bin/false", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")})
    assert r.returncode == 3, r.stdout + r.stderr
    res = load_result(next((tmp_path / "o").glob("*.json")))
    assert res.status == "infra_error" and res.error.kind == "compile_error"
    assert "compile: inductor failed" in res.error.message and not res.metrics
    assert "wan-compile-fails (infra_error: compile_error)" in r.stderr


def test_compile_failures_are_told_from_model_errors_on_real_exceptions():
    import torch

    def broken_backend(gm, example_inputs):
        raise RuntimeError("backend cannot lower this graph")

    with pytest.raises(Exception) as caught:
        torch.compile(lambda x: x * 2 + 1, backend=broken_backend)(torch.ones(3))
    assert is_compile_failure(caught.value)
    assert not is_compile_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_compile_failure(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert classify(OptionError("compile_error", "compile: inductor failed: ...")) == "compile_error"
    assert classify(OptionError("option_unavailable", "attention_backend: flash ...")) == "option_unavailable"


# --- cache-dit -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_pinned_cache_workload_caches_at_tiny_scale_and_records_counters_and_equivalence(tmp_path):
    wdir = tmp_path / "w"
    wdir.mkdir()
    _copy(wdir, CACHE, "qwen-cache")
    r = _run(wdir, tmp_path / "o")
    assert r.returncode == 0, r.stdout + r.stderr
    res = load_result(next((tmp_path / "o").glob("*.json")))
    assert res.status == "ok", res.error
    cached = res.metric("cache_cached_steps").repeats[0][0]
    computed = res.metric("cache_computed_steps").repeats[0][0]
    assert cached >= 1 and cached + computed == 4  # 4 tiny steps: some served from the cache
    assert res.metric("cache_cached_steps").direction == "higher_is_better"
    diffs = res.metric("cache_residual_diff").repeats[0]
    assert diffs and all(0 < d < 0.6 for d in diffs)  # each under the pinned tiny threshold, so it cached
    info = res.extra["cache"][0]
    assert len(info["cached_step_indices"]) == cached and info["cfg_cached_steps"] == cached
    # equivalence against the no-cache generation of the same seed, inside the field's guard
    psnr = res.metric("cache_psnr").repeats[0][0]
    ssim = res.metric("cache_ssim").repeats[0][0]
    maxabs = res.metric("cache_max_abs_diff").repeats[0][0]
    assert psnr >= 30 and ssim >= 0.90 and 0 < maxabs < 0.1  # not identical: the cache did change the output
    assert info["equivalence"]["within_guard"] is True


@pytest.mark.slow
def test_a_cache_that_never_caches_shows_it_in_the_result(tmp_path):
    wdir = tmp_path / "w"
    wdir.mkdir()

    def no_hits(d: dict) -> None:  # the tiny residual diffs are 0.2-0.4: 0.01 is never reached
        d["tiny"]["options"]["cache_config"]["residual_diff_threshold"] = 0.01

    _copy(wdir, CACHE, "qwen-cache-miss", no_hits)
    r = _run(wdir, tmp_path / "o")
    assert r.returncode == 0, r.stdout + r.stderr
    res = load_result(next((tmp_path / "o").glob("*.json")))
    assert res.metric("cache_cached_steps").repeats == [[0.0]]
    assert res.metric("cache_computed_steps").repeats == [[4.0]]
    assert res.metric("cache_psnr").repeats == [[100.0]] and res.metric("cache_max_abs_diff").repeats == [[0.0]]


def test_equivalence_metrics_on_real_arrays():
    import numpy as np

    from runners.engines.diffusers_engine import equivalence

    rng = np.random.default_rng(0)
    a = rng.random((1, 32, 32, 3)).astype(np.float32)
    same = equivalence(a, a.copy())
    assert same["psnr_db"] == 100.0 and same["ssim"] == pytest.approx(1.0) and same["max_abs_diff"] == 0.0
    near = equivalence(a, np.clip(a + rng.normal(0, 0.01, a.shape), 0, 1))
    assert 35 < near["psnr_db"] < 45 and 0.9 < near["ssim"] < 1.0 and near["within_guard"]
    other = equivalence(a, rng.random(a.shape))
    assert other["psnr_db"] < 15 and other["ssim"] < 0.2 and not other["within_guard"]
    with pytest.raises(ValueError, match="shape"):
        equivalence(a, a[:, :16])


# --- attention backends and MindIE-SD (in process, on a tiny real pipeline) ----------------------------
@pytest.fixture(scope="module")
def tiny_qwen():
    import torch
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    from runners.components import build_pipeline
    from runners.engines.diffusers_engine import shrink_edit_targets
    from runners.workloads import load_workload

    spec = load_workload(WORKLOADS / "qwen-image-edit-2511-1024.yaml")
    shrink_edit_targets(spec, "tiny")
    active = _AttentionBackendRegistry._active_backend
    with torch.inference_mode():
        pipe, _ = build_pipeline(spec, "tiny", "cpu", 0)
    yield pipe
    pipe.transformer.reset_attention_backend()
    _AttentionBackendRegistry._active_backend = active  # set_attention_backend sets it process-wide


def test_attention_backend_is_applied_through_diffusers_and_recorded(tiny_qwen):
    applied = apply_attention(tiny_qwen, Options(attention_backend="_native_math"), "cpu")
    assert applied["attention_backend"] == "_native_math" and applied["attention_backend_via"] == "diffusers"
    # every attention processor of the 4-block tiny transformer now carries it
    assert applied["attention_processors"] == {"_native_math": 4}
    procs = {m.processor._attention_backend for m in tiny_qwen.transformer.modules() if hasattr(m, "processor")}
    assert {getattr(b, "value", b) for b in procs} == {"_native_math"}


@pytest.mark.parametrize(
    ("backend", "needle"),
    [
        ("flash", "attention_backend: flash cannot run on this cpu device"),  # flash-attn is not installed
        ("_native_npu", "attention_backend: _native_npu is an Ascend NPU kernel; this run's device is cpu"),
        ("_npu_fia", "attention_backend: _npu_fia is an Ascend NPU kernel"),
        ("no-such-backend", "unknown backend 'no-such-backend'; known: "),
    ],
)
def test_an_attention_backend_that_cannot_run_is_refused_clearly(tiny_qwen, backend, needle):
    with pytest.raises(OptionError) as caught:
        apply_attention(tiny_qwen, Options(attention_backend=backend), "cpu")
    assert caught.value.guardrail_kind == "option_unavailable"
    assert needle in str(caught.value)


def test_mindiesd_compile_is_refused_off_an_npu(tiny_qwen):
    with pytest.raises(OptionError, match="compile: mindiesd needs an Ascend NPU") as caught:
        apply_compile(tiny_qwen, Options(compile="mindiesd"), "cpu")
    assert caught.value.guardrail_kind == "option_unavailable"


@pytest.mark.parametrize(
    ("backend", "needle"),
    [
        ("no-such-backend", "unknown backend 'no-such-backend'; known: "),
        ("_npu_fia", "_npu_fia is an Ascend NPU kernel; this run's device is cpu"),
    ],
)
def test_an_attention_backend_is_checked_before_the_lane_runs(tmp_path, capsys, backend, needle):
    """`guardrail run` refuses it as bad input (exit 2, file and field) before any process starts."""
    import yaml

    from tests.cli_inprocess import run_cli

    root = Path(__file__).resolve().parents[1]
    spec = yaml.safe_load((root / "workloads" / "qwen-image-edit-512.yaml").read_text())
    spec["options"] = {**spec.get("options", {}), "attention_backend": backend}
    wdir = tmp_path / "w"
    wdir.mkdir()
    (wdir / "qwen-image-edit-512.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    code, _, err = run_cli(
        capsys, "run", "--lane", spec["lanes"][0], "--device", "cpu", "--workloads-dir", str(wdir), "--out", str(out),
        "--quiet",
    )  # fmt: skip
    assert code == 2, err
    assert "qwen-image-edit-512.yaml" in err and "options.attention_backend" in err and needle in err
    assert not out.exists()  # nothing ran, nothing half-written
