"""`guardrail detect` end to end: the real CLI entry point on real CSV files."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from guardrail.cli import main

CLI = [sys.executable, "-c", "from guardrail.cli import main; main()"]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture()
def detect(monkeypatch, capsys):
    """The real `guardrail` entry point, in process (a subprocess per case costs seconds of imports)."""

    def run(*args: str) -> Result:
        monkeypatch.setattr(sys, "argv", ["guardrail", "detect", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return run


@pytest.fixture()
def series_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(1098, 2, 70), rng.normal(1140, 2, 30)]
    lines = ["time,commit,value"] + [
        f"2026-05-{i // 4 + 1:02d}T0{i % 4}:00:00Z,c{i:03d},{v:.3f}" for i, v in enumerate(x)
    ]
    path = tmp_path / "series.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_json_output_attributes_the_commit_range(series_csv: Path, detect):
    res = detect(str(series_csv), "--format", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["schema"] == "guardrail.changepoints/v1"
    [cp] = doc["change_points"]
    assert cp["index"] == 70
    assert cp["commit"] == "c070" and cp["commit_range"] == ["c069", "c070"]
    assert cp["change"] == pytest.approx(0.038, abs=0.005)
    assert cp["p_value"] < 1e-6
    assert set(cp) >= {"index", "commit", "time", "before", "after", "change", "p_value", "commit_range"}
    assert doc["suspects"] == []


def test_text_output_and_options(series_csv: Path, detect):
    res = detect(str(series_csv), "--window", "30", "--p-value", "0.0001", "--min-magnitude", "0.05")
    assert res.returncode == 0
    assert "no change points" in res.stdout  # 3.8% < 5%
    res = detect(str(series_csv))
    assert "row     70" in res.stdout and "c069..c070" in res.stdout


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("", "empty file"),
        ("when,commit,value\n1,a,2\n", "header lacks column(s) time"),
        ("time,commit,value\n1,a,2\n2,b,fast\n", "row 3, column value: value 'fast' is not a number"),
        ("time,commit,value\n1,a,2\n2,b\n", "row 3: has 2 columns"),
        ("time,commit,value\n1,a,inf\n", "row 2, column value: value 'inf' is not finite"),
    ],
)
def test_bad_csv_exits_2_naming_file_and_place(tmp_path: Path, content: str, needle: str, detect):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    res = detect(str(path))
    assert res.returncode == 2
    assert str(path) in res.stderr and needle in res.stderr


def test_missing_file_exits_2(tmp_path: Path, detect):
    res = detect(str(tmp_path / "nope.csv"))
    assert res.returncode == 2 and "no such file" in res.stderr


def test_unknown_format_exits_2(series_csv: Path, detect):
    res = detect(str(series_csv), "--format", "xml")
    assert res.returncode == 2 and "--format" in res.stderr


def test_installed_command_in_a_subprocess(tmp_path: Path):
    """One real process: the exit status and stderr as CI sees them."""
    path = tmp_path / "bad.csv"
    path.write_text("time,commit,value\n1,a,x\n")
    res = subprocess.run([*CLI, "detect", str(path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.startswith(f"error: {path}: row 2, column value")


def test_change_from_zero_is_valid_json(tmp_path: Path, detect):
    path = tmp_path / "zero.csv"
    path.write_text("time,commit,value\n" + "".join(f"{i},c{i},{0 if i < 10 else 1}\n" for i in range(20)))
    res = detect(str(path), "--format", "json")
    assert res.returncode == 0
    [cp] = json.loads(res.stdout)["change_points"]
    assert cp["index"] == 10 and cp["change"] is None
    assert "n/a" in detect(str(path)).stdout


def test_one_night_spike_is_a_suspect_not_a_change_point(tmp_path: Path, detect):
    rng = np.random.default_rng(3)
    x = rng.normal(3.7, 0.02, 12)
    x[7] *= 1.32  # the cache-dit night 11763: +32% for one night, back the next
    path = tmp_path / "spike.csv"
    path.write_text(
        "time,commit,value\n" + "".join(f"2026-06-{i + 10:02d},c{i:02d},{v:.4f}\n" for i, v in enumerate(x))
    )
    res = detect(str(path), "--format", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["schema"] == "guardrail.changepoints/v1" and doc["change_points"] == []
    [s] = doc["suspects"]
    assert s["index"] == 7 and s["commit"] == "c07" and s["time"] == "2026-06-17"
    assert s["change"] == pytest.approx(0.32, abs=0.03) and s["p_value"] < 1e-4
    assert set(s) == {"index", "commit", "time", "value", "level", "change", "p_value"}
    text = detect(str(path)).stdout
    assert "no change points in 12 points" in text
    assert "1 suspect (one-night outliers" in text and "row      7  2026-06-17  c07" in text
