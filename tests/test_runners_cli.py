"""`guardrail run` bad input: exit 2, one line naming the problem, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

GUARDRAIL = str(Path(sys.executable).parent / "guardrail")
WORKLOADS = Path(__file__).resolve().parent.parent / "workloads"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [GUARDRAIL, "run", *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


def test_unknown_lane_exits_2(tmp_path):
    r = _run("--lane", "weekly", "--out", str(tmp_path / "out"), "--device", "cpu")
    assert r.returncode == 2, r.stderr
    assert "unknown lane 'weekly'" in r.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_workload_exits_2(tmp_path):
    r = _run("--lane", "presubmit", "--workload", "nope", "--out", str(tmp_path / "out"), "--device", "cpu")
    assert r.returncode == 2
    assert "unknown workload 'nope'" in r.stderr


def test_unknown_device_and_scale_exit_2(tmp_path):
    r = _run("--lane", "presubmit", "--out", str(tmp_path / "o"), "--device", "tpu")
    assert r.returncode == 2 and "unknown device 'tpu'" in r.stderr
    r = _run("--lane", "presubmit", "--out", str(tmp_path / "o"), "--device", "cpu", "--scale", "huge")
    assert r.returncode == 2 and "unknown scale 'huge'" in r.stderr


def test_npu_without_torch_npu_exits_2_naming_the_extra(tmp_path):
    try:
        import torch_npu  # noqa: F401

        pytest.skip("torch_npu is installed here")
    except ImportError:
        pass
    r = _run("--lane", "presubmit", "--out", str(tmp_path / "out"), "--device", "npu")
    assert r.returncode == 2, r.stderr
    assert "torch_npu" in r.stderr and "'npu' extra" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_bad_workload_file_exits_2_before_anything_runs(tmp_path):
    wdir = tmp_path / "w"
    wdir.mkdir()
    data = yaml.safe_load((WORKLOADS / "wan22-ti2v-5b-720p.yaml").read_text())
    data["options"] = {"cache": "teacache"}
    (wdir / "wan22-ti2v-5b-720p.yaml").write_text(yaml.safe_dump(data))
    r = _run("--lane", "presubmit", "--out", str(tmp_path / "out"), "--device", "cpu", "--workloads-dir", str(wdir))
    assert r.returncode == 2
    assert "wan22-ti2v-5b-720p.yaml: options.cache:" in r.stderr
    assert not (tmp_path / "out").exists()


def test_auto_device_falls_back_to_cpu_here():
    pytest.importorskip("torch")
    import torch

    from runners.device import resolve

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert resolve("auto") == "cpu"
    assert resolve("cpu") == "cpu"
