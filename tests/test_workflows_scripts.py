"""The shell of perf-lane.yml's report and gate steps, run as written under bash (as Actions runs it:
`bash --noprofile --norc -eo pipefail`), with the real `guardrail` against the loopback GitHub server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.githubfake import TOKEN, FakeGitHub

ROOT = Path(__file__).resolve().parents[1]
SHA = "d" * 40
DOC = {
    "schema": "guardrail.verdicts/v1",
    "run": {"id": 3, "lane": "presubmit", "commit": SHA, "hardware": ["Ascend910B3"]},
    "verdicts": [
        {
            "workload": "wan22-ti2v-5b-720p",
            "metric": "denoise_step_latency",
            "hardware": "Ascend910B3",
            "verdict": "regression",
            "change": 0.05,
            "ci": [0.03, 0.07],
            "unit": "ms",
            "baseline": {"runs": 10, "median": 1000.0},
            "candidate": {"repeats": 2, "median": 1050.0},
            "explanation": "5% slower",
        }
    ],
    "summary": {"regression": 1},
    "status": "failure",
}


def step_script(name: str) -> str:
    steps = yaml.safe_load((ROOT / ".github/workflows/perf-lane.yml").read_text())["jobs"]["lane"]["steps"]
    return next(s["run"] for s in steps if s["name"] == name)


def guardrail_bin() -> Path:
    found = shutil.which("guardrail", path=str(Path(sys.executable).parent)) or shutil.which("guardrail")
    if not found:
        pytest.skip("the guardrail console script is not installed")
    return Path(found).parent


def run_step(name: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    bash = shutil.which("bash")
    full_env = {
        "PATH": f"{guardrail_bin()}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(cwd),
        "GITHUB_REPOSITORY": "org/project",
        "LANE": "presubmit",
        "KEY": "presubmit",
        "HEAD_SHA": SHA,
        "PR_NUMBER": "7",
        "GITHUB_STEP_SUMMARY": str(cwd / "summary.md"),
        **env,
    }
    return subprocess.run(
        [bash, "--noprofile", "--norc", "-eo", "pipefail", "-c", step_script(name)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def gh():
    with FakeGitHub() as fake:
        yield fake


@pytest.mark.parametrize(
    ("check_rc", "state"),
    [("1", "failure"), ("", "error"), ("3", "error")],
    ids=["regression", "no-check", "infra"],
)
def test_report_step(gh, tmp_path, check_rc, state):
    (tmp_path / "verdicts.json").write_text(json.dumps(DOC) if check_rc == "1" else "")
    env = {
        "GITHUB_API_URL": gh.url,
        "GITHUB_TOKEN": TOKEN,
        "CHECK_RC": check_rc,
        "RUN_OUTCOME": "failure" if check_rc == "" else "success",
        "INGEST_OUTCOME": "skipped" if check_rc == "" else "success",
    }
    proc = run_step("Comment, commit status and job summary", tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert [s["state"] for s in gh.statuses] == [state]
    assert gh.statuses[0]["context"] == "perf-guardrail/presubmit"
    body = gh.comments[("org/project", 7)][0]["body"]
    if state == "error":
        assert "no verdict: run " in body and f"check exit {check_rc or 'none'}" in body
    else:
        assert "wan22-ti2v-5b-720p" in body
    assert TOKEN not in proc.stdout + proc.stderr


def test_report_step_without_pr_sets_only_the_status(gh, tmp_path):
    (tmp_path / "verdicts.json").write_text(json.dumps({**DOC, "verdicts": [], "summary": {}, "status": "success"}))
    env = {
        "GITHUB_API_URL": gh.url,
        "GITHUB_TOKEN": TOKEN,
        "CHECK_RC": "0",
        "PR_NUMBER": "0",
        "LANE": "nightly",
    }
    proc = run_step("Comment, commit status and job summary", tmp_path, {**env, "KEY": "nightly"})
    assert proc.returncode == 0, proc.stderr
    assert not gh.comments
    assert [(s["state"], s["context"]) for s in gh.statuses] == [("success", "perf-guardrail/nightly")]
    assert "No performance regression" in (tmp_path / "summary.md").read_text()


@pytest.mark.parametrize(("check_rc", "code"), [("0", 0), ("1", 1), ("2", 2), ("", 3), ("4", 4)])
def test_gate_step(tmp_path, check_rc, code):
    (tmp_path / "verdicts.json").write_text(json.dumps(DOC))
    assert run_step("Gate on the verdict", tmp_path, {"CHECK_RC": check_rc}).returncode == code


@pytest.mark.parametrize("check_rc", ["0", "1"])
@pytest.mark.parametrize("content", ["", None], ids=["empty", "absent"])
def test_gate_step_without_verdicts_errs(tmp_path, check_rc, content):
    # A check that exited 0/1 without writing its document (a crash before issue 13's exit 4) is no pass.
    if content is not None:
        (tmp_path / "verdicts.json").write_text(content)
    proc = run_step("Gate on the verdict", tmp_path, {"CHECK_RC": check_rc})
    assert proc.returncode == 3
    assert "verdicts.json is empty or absent" in proc.stdout


@pytest.mark.parametrize(
    ("check_rc", "verdicts", "says"),
    [
        ("4", "", "check exit 4 (internal error in guardrail)"),
        ("2", "", "check exit 2 (bad input or usage)"),
        ("3", "", "check exit 3 (infrastructure failure)"),
        ("137", "", "check exit 137 (unexpected: crashed or killed)"),
        ("1", "", "check exit 1, but verdicts.json is empty or absent"),
        ("0", None, "check exit 0, but verdicts.json is empty or absent"),
        ("1", "{not json", "but guardrail comment --verdicts verdicts.json exited 2"),
    ],
    ids=["internal", "bad-input", "infra", "killed", "rc1-empty", "rc0-absent", "rc1-garbage"],
)
def test_report_step_posts_error_for_anything_but_a_verdict(gh, tmp_path, check_rc, verdicts, says):
    if verdicts is not None:
        (tmp_path / "verdicts.json").write_text(verdicts)
    env = {
        "GITHUB_API_URL": gh.url,
        "GITHUB_TOKEN": TOKEN,
        "CHECK_RC": check_rc,
        "RUN_OUTCOME": "success",
        "INGEST_OUTCOME": "success",
    }
    proc = run_step("Comment, commit status and job summary", tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert [s["state"] for s in gh.statuses] == ["error"]
    body = gh.comments[("org/project", 7)][0]["body"]
    assert says in body, body
    assert gh.statuses[0]["description"].startswith("no verdict: run success, ingest success, check exit ")


def test_pending_step(gh, tmp_path):
    proc = run_step("Mark the commit status pending", tmp_path, {"GITHUB_API_URL": gh.url, "GITHUB_TOKEN": TOKEN})
    assert proc.returncode == 0, proc.stderr
    assert [s["state"] for s in gh.statuses] == ["pending"]
    assert not gh.comments
