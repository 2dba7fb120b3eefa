"""`guardrail compare` on result files, no database: the A/A pair passes, a 10% slower candidate fails."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.factories import noisy_repeats, result_doc, write
from tests.timeline import iso


def _files(tmp_path, candidate_level):
    rng = np.random.default_rng(42)
    metrics = lambda level: {  # noqa: E731
        "denoise_step_latency": noisy_repeats(level, repeats=3, between_cv=0.002, within_cv=0.002, rng=rng),
        "peak_memory": [[11776.0]] * 3,
    }
    base = write(tmp_path / "base.json", result_doc(lane="presubmit", metrics=metrics(1000.0)))
    cand = write(
        tmp_path / "cand.json",
        result_doc(lane="presubmit", started_at=iso(days=-1, hours=-7), metrics=metrics(candidate_level)),
    )
    return base, cand


def _compare(base, cand, *extra):
    return subprocess.run(
        [sys.executable, "-m", "guardrail", "compare", "--baseline", str(base), "--candidate", str(cand), *extra],
        capture_output=True,
        text=True,
    )


def test_aa_pair_is_no_change_exit_0(tmp_path):
    proc = _compare(*_files(tmp_path, 1000.0), "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert {v["verdict"] for v in doc["verdicts"]} == {"no_change"}
    assert doc["schema"] == "guardrail.verdicts/v1" and doc["status"] == "success"


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
def test_ten_percent_slower_is_a_regression_exit_1(tmp_path, fmt):
    proc = _compare(*_files(tmp_path, 1100.0), "--format", fmt)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    if fmt == "json":
        v = next(v for v in json.loads(proc.stdout)["verdicts"] if v["metric"] == "denoise_step_latency")
        assert v["verdict"] == "regression" and 0.08 < v["change"] < 0.12 and v["ci"][0] > 0.01
        assert v["baseline"]["runs"] == 1 and v["candidate"]["repeats"] == 3 and v["p_value"] < 0.01
    else:
        assert "regression" in proc.stdout.lower()


def test_bad_usage_and_bad_files_exit_2(tmp_path):
    base, _ = _files(tmp_path, 1000.0)
    assert _compare(base, tmp_path / "nope.json").returncode == 2
    lonely = subprocess.run([sys.executable, "-m", "guardrail", "compare", str(base)], capture_output=True, text=True)
    assert lonely.returncode == 2 and "--baseline or a --candidate" in lonely.stderr
