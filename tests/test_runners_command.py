"""External-command engine: a real command writes a real vLLM-Omni result file, read through the adapter."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml

from guardrail.errors import InputError
from guardrail.schema import load_result
from runners import run_lane
from runners.workloads import load_workload

CORPUS = Path("/work/shared/corpus/vllm-omni-nightly/buildkite_nightly_raw")


def _sample() -> Path:
    files = sorted(CORPUS.glob("*/diffusion_result_test_wan22_i2v_vllm_omni*.json")) if CORPUS.is_dir() else []
    if not files:
        pytest.skip("vLLM-Omni corpus not available")
    return files[0]


def _workload(
    wdir: Path, name: str, argv: list[str], timeout: float = 60, adapter: str = "vllm-omni-diffusion"
) -> Path:
    spec = {
        "name": name,
        "family": "wan2.2",
        "lanes": ["nightly"],
        "engine": "command",
        "timeout_s": timeout,
        "command": {"argv": argv, "output": "result.json", "adapter": adapter},
    }
    p = wdir / f"{name}.yaml"
    p.write_text(yaml.safe_dump(spec))
    return p


def test_command_output_is_adapted_into_results(tmp_path):
    sample = tmp_path / "bench_out.json"
    shutil.copy(_sample(), sample)
    wdir = tmp_path / "w"
    wdir.mkdir()
    copy = f"import shutil; shutil.copy({str(sample)!r}, 'result.json')"
    _workload(wdir, "vllm-omni-wan-i2v", [sys.executable, "-c", copy])
    files = run_lane("nightly", device="cpu", out_dir=tmp_path / "out", progress=False, workloads_dir=wdir)
    assert files
    results = [load_result(f) for f in files]
    assert all(r.run.lane == "nightly" for r in results)
    assert any(r.metrics for r in results)
    assert results[0].extra["command"]["adapter"] == "vllm-omni-diffusion"
    # the command's own file is kept, but not as JSON that `guardrail ingest OUT/` would store a second time
    assert not list((tmp_path / "out" / "work").rglob("*.json"))
    assert list((tmp_path / "out" / "work").rglob("result.json.raw"))


def test_failing_and_hanging_commands_become_results(tmp_path):
    wdir = tmp_path / "w"
    wdir.mkdir()
    _workload(wdir, "fails", [sys.executable, "-c", "import sys; sys.exit(7)"])
    _workload(wdir, "hangs", [sys.executable, "-c", "import time; time.sleep(60)"], timeout=1)
    files = run_lane("nightly", device="cpu", out_dir=tmp_path / "out", progress=False, workloads_dir=wdir)
    by_name = {load_result(f).workload.name: load_result(f) for f in files}
    assert by_name["fails"].status == "infra_error" and by_name["fails"].error.kind == "command_failed"
    assert "exited with 7" in by_name["fails"].error.message
    assert by_name["hangs"].status == "timeout"


def test_unknown_adapter_is_refused(tmp_path):
    p = _workload(tmp_path, "x", ["true"], adapter="nope")
    with pytest.raises(InputError, match="command.adapter: unknown adapter 'nope'"):
        load_workload(p)
