"""The Buildkite job summary: `guardrail buildkite annotate|upload-results` and scripts/buildkite-report (and, slow,
a pipeline step from .buildkite/ run as written on a tiny CPU run), with the real `buildkite-agent` command line
replaced only by a recording stand-in on PATH, and GitHub by the loopback server of tests/githubfake.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from guardrail.reports.buildkite import ANNOTATION_LIMIT, STYLE, annotation, context_for, fit_annotation
from tests.githubfake import TOKEN, FakeGitHub

ROOT = Path(__file__).resolve().parents[1]
SHA = "d" * 40
JOB = "0190a5c8-3e2f-4a4e-9f3c-2d0c1f6b7e11"
REGRESSION = {
    "schema": "guardrail.verdicts/v1",
    "run": {
        "id": 3,
        "lane": "presubmit",
        "commit": SHA,
        "hardware": ["Ascend910B3"],
        "url": f"https://buildkite.com/org/project/builds/77#{JOB}",
    },
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
PASS = {**REGRESSION, "verdicts": [{**REGRESSION["verdicts"][0], "verdict": "no_change", "change": 0.001}],
        "summary": {"no_change": 1}, "status": "success"}  # fmt: skip

STAND_IN = """#!{python}
# A recording stand-in for buildkite-agent: one JSON line per call (argv, stdin, cwd); BK_AGENT_FAIL makes it fail.
import json, os, sys
body = sys.stdin.read()
with open(os.environ["BK_AGENT_LOG"], "a") as fh:
    fh.write(json.dumps({{"argv": sys.argv[1:], "stdin": body, "cwd": os.getcwd()}}) + "\\n")
if os.environ.get("BK_AGENT_FAIL"):
    print("fatal: Failed to upload: 503 Service Unavailable", file=sys.stderr)
    sys.exit(1)
"""


def guardrail_bin() -> Path:
    found = shutil.which("guardrail", path=str(Path(sys.executable).parent)) or shutil.which("guardrail")
    if not found:
        pytest.skip("the guardrail console script is not installed")
    return Path(found).parent


@pytest.fixture
def agent(tmp_path) -> Path:
    """A bin directory holding the stand-in `buildkite-agent`; its calls land in agent.log beside it."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "buildkite-agent"
    exe.write_text(STAND_IN.format(python=sys.executable))
    exe.chmod(0o755)
    return bindir


def calls(agent: Path) -> list[dict]:
    log = agent / "agent.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def gh():
    with FakeGitHub() as fake:
        yield fake


def bk_env(agent: Path, cwd: Path, **over: str) -> dict[str, str]:
    env = {
        "PATH": f"{agent}{os.pathsep}{guardrail_bin()}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(cwd),
        "BK_AGENT_LOG": str(agent / "agent.log"),
        "GUARDRAIL_NOW": os.environ.get("GUARDRAIL_NOW", ""),
        "BUILDKITE": "true",
        "BUILDKITE_BUILD_NUMBER": "77",
        "BUILDKITE_BUILD_ID": "0190a5c8-1111-4a4e-9f3c-2d0c1f6b7e11",
        "BUILDKITE_JOB_ID": JOB,
        "BUILDKITE_BUILD_URL": "https://buildkite.com/org/project/builds/77",
        "BUILDKITE_COMMIT": SHA,
        "BUILDKITE_BRANCH": "feature/x",
        "BUILDKITE_PULL_REQUEST": "42",
        "BUILDKITE_PULL_REQUEST_BASE_BRANCH": "main",
        "BUILDKITE_RETRY_COUNT": "0",
        "BUILDKITE_PIPELINE_SLUG": "project",
        "BUILDKITE_ORGANIZATION_SLUG": "org",
        "BUILDKITE_AGENT_META_DATA_QUEUE": "a3_npu_4",
        "BUILDKITE_REPO": "git@github.com:org/project.git",
        "LANE": "presubmit",
        "KEY": "presubmit",
    }
    env.update(over)
    return env


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


# --- the annotation itself --------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "style"), [("failure", "error"), ("error", "warning"), ("success", "success")])
def test_style_by_verdict(status, style):
    doc = {**REGRESSION, "status": status}
    assert annotation(doc, key="presubmit").style == style == STYLE[status]


def test_body_is_the_pr_comments_report_with_a_buildkite_link():
    ann = annotation(REGRESSION, key="presubmit-cuda", dashboard_url="https://perf.example.org")
    assert ann.context == "perf-guardrail-presubmit-cuda"
    assert "### Performance guardrail: presubmit-cuda" in ann.body
    assert "wan22-ti2v-5b-720p" in ann.body and "Performance regression" in ann.body
    assert f"[CI job](https://buildkite.com/org/project/builds/77#{JOB})" in ann.body
    assert "https://perf.example.org/runs/3" in ann.body


def test_context_is_one_per_lane_key():
    assert context_for("nightly") != context_for("nightly-cuda")
    assert context_for("a b/c") == "perf-guardrail-a-b-c"


def test_an_over_long_body_is_cut_under_the_limit_with_its_fold_closed():
    body = "### t\n\n<details>\n" + "| é | row |\n" * 300_000
    cut = fit_annotation(body)
    assert len(cut.encode()) <= ANNOTATION_LIMIT
    assert cut.count("<details>") == cut.count("</details>")
    assert "truncated" in cut


# --- guardrail buildkite annotate / upload-results through the stand-in --------------------------------------


def test_annotate_pipes_the_body_to_the_agent(agent, tmp_path):
    (tmp_path / "verdicts.json").write_text(json.dumps(REGRESSION))
    proc = run(["guardrail", "buildkite", "annotate", "--key", "presubmit", "--verdicts", "verdicts.json"],
               tmp_path, bk_env(agent, tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [call] = calls(agent)
    assert call["argv"] == ["annotate", "--style", "error", "--context", "perf-guardrail-presubmit"]
    assert "wan22-ti2v-5b-720p" in call["stdin"]


def test_upload_results_names_the_result_glob(agent, tmp_path):
    proc = run(["guardrail", "buildkite", "upload-results"], tmp_path, bk_env(agent, tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert [c["argv"] for c in calls(agent)] == [["artifact", "upload", "results/**/*"]]
    assert calls(agent)[0]["stdin"] == ""


def test_a_failing_agent_is_exit_3_in_one_line(agent, tmp_path):
    proc = run(["guardrail", "buildkite", "upload-results"], tmp_path, bk_env(agent, tmp_path, BK_AGENT_FAIL="1"))
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines() == [
        "error: buildkite-agent artifact upload exited 1: fatal: Failed to upload: 503 Service Unavailable"
    ]


def test_no_agent_on_path_is_exit_3(tmp_path):
    env = {"PATH": str(guardrail_bin()), "HOME": str(tmp_path)}
    proc = run(["guardrail", "buildkite", "upload-results"], tmp_path, env)
    assert proc.returncode == 3 and "buildkite-agent is not on PATH" in proc.stderr


# --- scripts/buildkite-report: annotation, GitHub, gate ----------------------------------------------------


@pytest.mark.parametrize(
    ("check_rc", "doc", "style", "state", "exit_code"),
    [
        ("1", REGRESSION, "error", "failure", 1),
        ("0", PASS, "success", "success", 0),
        ("3", None, "warning", "error", 3),
        ("", None, "warning", "error", 3),
        ("0", "", "warning", "error", 3),  # a pass without a verdicts document is not a pass
    ],
    ids=["regression", "pass", "infra", "no-check", "empty-verdicts"],
)
def test_report_script(agent, gh, tmp_path, check_rc, doc, style, state, exit_code):
    if doc is not None:
        (tmp_path / "verdicts.json").write_text(json.dumps(doc) if doc else "")
    env = bk_env(agent, tmp_path, GITHUB_API_URL=gh.url, GITHUB_TOKEN=TOKEN, CHECK_RC=check_rc,
                 RUN_OUTCOME="success", INGEST_OUTCOME="success" if check_rc else "failure")  # fmt: skip
    proc = run([str(ROOT / "scripts/buildkite-report")], tmp_path, env)
    assert proc.returncode == exit_code, proc.stdout + proc.stderr
    [call] = calls(agent)
    assert call["argv"] == ["annotate", "--style", style, "--context", "perf-guardrail-presubmit"]
    assert [(s["state"], s["context"], s["sha"]) for s in gh.statuses] == [(state, "perf-guardrail/presubmit", SHA)]
    comment = gh.comments[("org/project", 42)][0]["body"]
    if state == "error":
        why = f"check exit {check_rc or 'none'}"
        assert "no verdict: run success" in call["stdin"] and why in call["stdin"]
        assert why in comment
    else:
        assert "wan22-ti2v-5b-720p" in call["stdin"] and "wan22-ti2v-5b-720p" in comment
    assert TOKEN not in proc.stdout + proc.stderr


def test_report_script_without_a_pr_or_a_github_token(agent, gh, tmp_path):
    (tmp_path / "verdicts.json").write_text(json.dumps(REGRESSION))
    env = bk_env(agent, tmp_path, GITHUB_API_URL=gh.url, CHECK_RC="1", BUILDKITE_PULL_REQUEST="false")
    proc = run([str(ROOT / "scripts/buildkite-report")], tmp_path, env)
    assert proc.returncode == 1
    assert "no PR comment or commit status on GitHub" in proc.stdout
    assert len(calls(agent)) == 1 and not gh.log
    # With the token, a build that is not for a PR gets the status only.
    proc = run([str(ROOT / "scripts/buildkite-report")], tmp_path, {**env, "GITHUB_TOKEN": TOKEN})
    assert proc.returncode == 1, proc.stderr
    assert [s["state"] for s in gh.statuses] == ["failure"] and not gh.comments


def test_a_failing_annotation_does_not_change_the_gate(agent, gh, tmp_path):
    (tmp_path / "verdicts.json").write_text(json.dumps(PASS))
    env = bk_env(agent, tmp_path, GITHUB_API_URL=gh.url, GITHUB_TOKEN=TOKEN, CHECK_RC="0", BK_AGENT_FAIL="1")
    proc = run([str(ROOT / "scripts/buildkite-report")], tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert "no build annotation could be made" in proc.stderr
    assert [s["state"] for s in gh.statuses] == ["success"]


# --- the whole lane, step by step, on this machine -----------------------------------------------------------


def pipeline_step(name: str, device: str) -> dict:
    steps = yaml.safe_load((ROOT / ".buildkite" / name).read_text())["steps"]
    return next(st for st in steps if st["env"]["DEVICE"] == device)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("pipeline", "pr", "exit_code", "style", "state"),
    [("perf-presubmit.yml", "42", 1, "error", "failure"), ("perf-nightly.yml", "false", 0, "success", "success")],
)
def test_a_pipeline_step_runs_as_written(agent, gh, tmp_path, pipeline, pr, exit_code, style, state):
    """The NPU step of a pipeline from the repo, its last command as Buildkite runs it ($$ unescaped at upload) with
    its env and Buildkite's, the device switched to a tiny CPU run of one workload: pending status → run → artifact
    upload → ingest → check → (nightly: change points) → annotation → PR comment and status. No history here: the
    presubmit's missing baseline fails closed (exit 1); the first nightly's series are new (exit 0)."""
    try:
        import diffusers  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"guardrail run needs {exc.name}")
    step = pipeline_step(pipeline, "npu")
    lane, key = step["env"]["LANE"], step["env"]["KEY"]
    for folder in ("workloads", "baselines", "scripts"):
        (tmp_path / folder).symlink_to(ROOT / folder)
    (tmp_path / ".guardrail-venv").symlink_to(Path(sys.executable).parent.parent)  # the venv the steps create
    db = f"sqlite:///{tmp_path / 'guardrail.db'}"
    # The step's env as written, then this machine's: a CPU, no service (the pipeline's GUARDRAIL_URL is left out,
    # so the ingest goes into GUARDRAIL_DB), the loopback GitHub.
    env = bk_env(agent, tmp_path, **{**step["env"], "DEVICE": "cpu"}, GITHUB_API_URL=gh.url, GITHUB_TOKEN=TOKEN,
                 GUARDRAIL_DB=db, BUILDKITE_PULL_REQUEST=pr, BUILDKITE_BRANCH="main" if pr == "false" else "feature/x",
                 SCALE="tiny", WORKLOADS="qwen-image-edit-1024", REPEATS="1")  # fmt: skip
    env["PATH"] = f"{agent}{os.pathsep}/usr/bin{os.pathsep}/bin"  # guardrail only from the step's own venv
    command = step["commands"][-1].replace("$$", "$")
    proc = run(["bash", "--noprofile", "--norc", "-c", command], tmp_path, env, timeout=600)
    assert proc.returncode == exit_code, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = sorted((tmp_path / "results").glob("*.json"))
    assert results
    source = json.loads(results[0].read_text())["run"]["source"]
    assert source["pr"] == (42 if pr == "42" else None) and source["commit"] == SHA
    url = f"https://buildkite.com/org/project/builds/77#{JOB}"
    assert source["ci"] == {"provider": "buildkite", "run_id": "77", "attempt": 1, "url": url, "queue": "a3_npu_4"}
    made = calls(agent)
    assert made[0]["argv"] == ["artifact", "upload", "results/**/*"]
    report = made[-1]
    assert report["argv"] == ["annotate", "--style", style, "--context", f"perf-guardrail-{key}"]
    assert "qwen-image-edit-1024" in report["stdin"]
    assert ("missing baseline" if lane == "presubmit" else "new series") in report["stdin"]
    if lane == "nightly":
        assert made[1]["argv"] == ["annotate", "--style", "info", "--context", "perf-guardrail-nightly-changepoints"]
        assert "Change points on the nightly history" in made[1]["stdin"]
    assert len(made) == (3 if lane == "nightly" else 2)
    assert [(s["state"], s["context"]) for s in gh.statuses] == [
        ("pending", f"perf-guardrail/{key}"),
        (state, f"perf-guardrail/{key}"),
    ]
    if pr == "42":
        assert "qwen-image-edit-1024" in gh.comments[("org/project", 42)][0]["body"]
    else:
        assert not gh.comments
    assert TOKEN not in proc.stdout + proc.stderr
