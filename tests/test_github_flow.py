"""The presubmit flow end to end, as perf-lane.yml runs it: result files → ingest → check → comment,
against a real SQLite store and the loopback GitHub server. Two pushes to one PR: a regression, then
the fix; one comment, created then updated, and a status per commit."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.cli_inprocess import run_cli
from tests.githubfake import TOKEN, FakeGitHub

REPO = "org/project"
BAD_SHA = "b" * 40
GOOD_SHA = "c" * 40
SOFTWARE = {"torch": "2.9.0", "diffusers": "0.42.1"}


def result(*, lane: str, commit: str, when: datetime, level: float, seed: int, pr=None, base=None, branch="main"):
    rng = random.Random(seed)
    proc = [level * (1 + rng.gauss(0, 0.002)) for _ in range(3)]  # between-process noise
    return {
        "schema": "guardrail.result/v1",
        "run": {
            "lane": lane,
            "started_at": when.isoformat().replace("+00:00", "Z"),
            "source": {"repo": REPO, "commit": commit, "branch": branch, "pr": pr, "base_commit": base},
        },
        "environment": {
            # a GPU: on a CPU the lane gates CPU time and wall time is informational (baselines/presubmit.yaml)
            "hardware": "H100-test",
            "device_type": "cuda",
            "device_count": 1,
            "software": SOFTWARE,
        },
        "workload": {"name": "tiny-wan", "family": "wan2.2", "digest": "sha256:tiny", "spec": {}},
        "status": "ok",
        "metrics": [
            {
                "name": "denoise_step_latency",
                "unit": "ms",
                "direction": "lower_is_better",
                "repeats": [[p * (1 + rng.gauss(0, 0.001)) for _ in range(5)] for p in proc],
            }
        ],
    }


@pytest.fixture
def gh():
    with FakeGitHub() as fake:
        yield fake


def test_presubmit_flow_regression_then_fix(gh, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GITHUB_API_URL", gh.url)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    for var in ("GITHUB_ACTIONS", "GITHUB_EVENT_PATH", "GUARDRAIL_DASHBOARD_URL"):
        monkeypatch.delenv(var, raising=False)
    db = f"sqlite:///{tmp_path / 'guardrail.db'}"
    start = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)

    history = tmp_path / "nightly"
    history.mkdir()
    for i in range(12):
        doc = result(lane="nightly", commit=f"{i:040x}", when=start + timedelta(days=i), level=100.0, seed=i)
        (history / f"n{i:02d}.json").write_text(json.dumps(doc))
    base = f"{11:040x}"
    code, out, err = run_cli(capsys, "ingest", "--db", db, str(history))
    assert code == 0, err

    def push(sha: str, level: float, seed: int, day: int) -> tuple[int, Path]:
        results = tmp_path / f"results-{sha[:4]}"
        results.mkdir()
        doc = result(
            lane="presubmit", commit=sha, when=start + timedelta(days=day), level=level, seed=seed,
            pr=7, base=base, branch="feature",
        )  # fmt: skip
        (results / "tiny-wan.json").write_text(json.dumps(doc))
        assert run_cli(capsys, "ingest", "--db", db, str(results))[0] == 0
        code, out, err = run_cli(
            capsys,
            "check",
            "--db",
            db,
            "--commit",
            sha,
            "--lane",
            "presubmit",
            "--format",
            "json",
        )
        assert code in (0, 1), err
        verdicts = tmp_path / f"verdicts-{sha[:4]}.json"
        verdicts.write_text(out)
        args = ["comment", "--repo", REPO, "--pr", "7", "--sha", sha, "--lane", "presubmit"]
        c_code, c_out, c_err = run_cli(capsys, *args, "--verdicts", str(verdicts))
        assert c_code == 0, c_err
        return code, verdicts

    # Push 1: 8% slower than main's nightlies.
    code, verdicts = push(BAD_SHA, 108.0, 100, 13)
    doc = json.loads(verdicts.read_text())
    assert code == 1
    assert doc["schema"] == "guardrail.verdicts/v1"
    assert [v["verdict"] for v in doc["verdicts"]] == ["regression"]
    body = gh.comments[(REPO, 7)][0]["body"]
    assert "Performance regression" in body and "tiny-wan" in body
    assert gh.statuses[-1]["state"] == "failure" and gh.statuses[-1]["sha"] == BAD_SHA

    # Push 2: back to main's level.
    code, verdicts = push(GOOD_SHA, 100.0, 200, 14)
    assert code == 0
    assert len(gh.comments[(REPO, 7)]) == 1  # the same comment, edited
    assert len(gh.requests("POST", r"/issues/7/comments$")) == 1
    assert len(gh.requests("PATCH", r"/issues/comments/")) == 1
    assert "Performance regression" not in gh.comments[(REPO, 7)][0]["body"]
    assert [(s["sha"], s["state"], s["context"]) for s in gh.statuses] == [
        (BAD_SHA, "failure", "perf-guardrail/presubmit"),
        (GOOD_SHA, "success", "perf-guardrail/presubmit"),
    ]
    assert (tmp_path / "summary.md").read_text().count("### Performance guardrail") == 2

    # Without --verdicts the command reads the newest check from the database (the lead's query).
    try:
        from guardrail.store.queries import latest_verdicts_doc  # noqa: F401
    except ImportError:
        return
    code, out, err = run_cli(capsys, "comment", "--repo", REPO, "--pr", "7", "--sha", GOOD_SHA, "--db", db)
    assert code == 0, err
    assert gh.statuses[-1]["state"] == "success"
    assert len(gh.comments[(REPO, 7)]) == 1
