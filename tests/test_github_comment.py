"""`guardrail comment` and the GitHub client against a real loopback HTTP server (tests/githubfake.py)."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest

from guardrail.errors import InfraError, InputError
from guardrail.reports.github import GitHub, RetryPolicy, ServerError, marker_for
from tests.cli_inprocess import run_cli
from tests.githubfake import TOKEN, FakeGitHub

REPO = "org/project"
SHA = "0123456789abcdef0123456789abcdef01234567"

DOC = {
    "schema": "guardrail.verdicts/v1",
    "run": {"id": 12, "lane": "presubmit", "commit": SHA, "pr": 7, "hardware": ["H100"], "url": None},
    "verdicts": [
        {
            "workload": "wan22-ti2v-5b-720p",
            "metric": "denoise_step_latency",
            "hardware": "H100",
            "verdict": "regression",
            "change": 0.034,
            "ci": [0.021, 0.047],
            "unit": "ms",
            "baseline": {"runs": 10, "median": 1098.2},
            "candidate": {"repeats": 2, "median": 1135.5},
            "explanation": "3.4% slower (95% CI 2.1–4.7%), above the 1% threshold",
        },
        {
            "workload": "qwen-image-edit",
            "metric": "peak_memory",
            "hardware": "H100",
            "verdict": "no_change",
            "change": 0.0,
            "ci": [-0.001, 0.001],
            "unit": "MiB",
            "baseline": {"runs": 10, "median": 11776},
            "candidate": {"repeats": 2, "median": 11776},
        },
    ],
    "summary": {
        "regression": 1,
        "improvement": 0,
        "no_change": 1,
        "inconclusive": 0,
        "noisy": 0,
        "missing": 0,
    },
    "expected_false_alarms": 0.05,
    "status": "failure",
}


@pytest.fixture
def gh():
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture
def env(gh, monkeypatch, tmp_path):
    monkeypatch.setenv("GITHUB_API_URL", gh.url)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    monkeypatch.delenv("GUARDRAIL_DASHBOARD_URL", raising=False)
    return tmp_path


def write_doc(tmp_path: Path, doc: dict, name: str = "verdicts.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def comment_args(path: Path, *extra: str) -> list[str]:
    return ["comment", "--repo", REPO, "--pr", "7", "--verdicts", str(path), *extra]


def test_comment_created_once_then_updated(gh, env, capsys, monkeypatch):
    first = write_doc(env, DOC, "first.json")
    code, out, err = run_cli(capsys, *comment_args(first, "--dashboard-url", "https://perf.example.org"))
    assert code == 0, err
    assert "comment created" in out

    fixed = copy.deepcopy(DOC)
    fixed["verdicts"][0].update(verdict="no_change", change=0.001, ci=[-0.002, 0.004])
    fixed["summary"] = {"no_change": 2}
    fixed["status"] = "success"
    second = write_doc(env, fixed, "second.json")
    code, out, err = run_cli(capsys, *comment_args(second, "--dashboard-url", "https://perf.example.org"))
    assert code == 0, err
    assert "comment updated" in out

    comments = gh.comments[(REPO, 7)]
    assert len(comments) == 1
    assert len(gh.requests("POST", r"/issues/7/comments$")) == 1
    assert len(gh.requests("PATCH", r"/issues/comments/")) == 1
    body = comments[0]["body"]
    assert body.startswith(marker_for("presubmit"))
    assert "No performance regression" in body and "Performance regression" not in body

    assert [s["state"] for s in gh.statuses] == ["failure", "success"]
    assert all(s["context"] == "perf-guardrail/presubmit" and s["sha"] == SHA for s in gh.statuses)
    assert gh.statuses[0]["target_url"] == "https://perf.example.org/runs/12"
    assert gh.statuses[0]["description"].startswith("1 regression")

    summary = (env / "summary.md").read_text()
    assert summary.count("### Performance guardrail") == 2  # appended, not overwritten
    assert all(r.authorization == f"Bearer {TOKEN}" for r in gh.log)
    assert TOKEN not in out + err + summary + body


def test_same_report_twice_leaves_comment_alone(gh, env, capsys, monkeypatch):
    path = write_doc(env, DOC)
    for _ in range(2):
        code, _, err = run_cli(capsys, *comment_args(path))
        assert code == 0, err
    assert len(gh.comments[(REPO, 7)]) == 1
    assert not gh.requests("PATCH")


def test_finds_its_comment_on_a_later_page(gh, env, capsys, monkeypatch):
    gh.per_page_max = 30
    for i in range(95):
        gh.add_comment(REPO, 7, f"comment {i}")
    # A human quoting the marker mid-body, and our own bot comment on page 3.
    gh.add_comment(REPO, 7, f"quote: {marker_for('presubmit')}")
    mine = gh.add_comment(REPO, 7, marker_for("presubmit") + "\nold report", login="github-actions[bot]", type_="Bot")
    for i in range(20):
        gh.add_comment(REPO, 7, f"later {i}")
    code, out, err = run_cli(capsys, *comment_args(write_doc(env, DOC)))
    assert code == 0, err
    assert "comment updated" in out
    assert not gh.requests("POST", r"/comments$")
    pages = gh.requests("GET", r"/issues/7/comments$")
    assert len(pages) == 4  # 117 comments, 30 a page
    updated = next(c for c in gh.comments[(REPO, 7)] if c["id"] == mine)
    assert "Performance regression" in updated["body"]


def test_separate_keys_keep_separate_comments(gh, env, capsys, monkeypatch):
    path = write_doc(env, DOC)
    assert run_cli(capsys, *comment_args(path))[0] == 0
    assert run_cli(capsys, *comment_args(path, "--key", "presubmit-cuda"))[0] == 0
    assert len(gh.comments[(REPO, 7)]) == 2
    assert {s["context"] for s in gh.statuses} == {
        "perf-guardrail/presubmit",
        "perf-guardrail/presubmit-cuda",
    }


def test_server_error_then_success_is_retried(gh, env, capsys, monkeypatch):
    gh.fail("GET", r"/issues/7/comments$", 500)
    gh.fail("POST", r"/statuses/", 502)
    code, _, err = run_cli(capsys, *comment_args(write_doc(env, DOC)))
    assert code == 0, err
    assert [r.status for r in gh.requests("GET")] == [500, 200]
    assert [r.status for r in gh.requests("POST", "/statuses/")] == [502, 201]
    assert len(gh.statuses) == 1


@pytest.mark.parametrize("performed", [False, True])
def test_failed_create_is_never_duplicated(gh, env, capsys, monkeypatch, performed):
    # A 502 on create may mean it happened (performed) or not: either way, one comment in the end.
    gh.fail("POST", r"/issues/7/comments$", 502, perform=performed)
    code, _, err = run_cli(capsys, *comment_args(write_doc(env, DOC)))
    assert code == 0, err
    assert len(gh.comments[(REPO, 7)]) == 1
    assert len(gh.requests("POST", r"/issues/7/comments$")) == (1 if performed else 2)


def test_secondary_rate_limit_honours_retry_after(gh, env, capsys, monkeypatch):
    gh.fail(
        "GET",
        r"/comments$",
        403,
        headers={"retry-after": "1"},
        body={"message": "You have exceeded a secondary rate limit."},
    )
    gh.fail("POST", r"/statuses/", 429, headers={"retry-after": "0"})
    start = time.monotonic()
    code, _, err = run_cli(capsys, *comment_args(write_doc(env, DOC)))
    assert code == 0, err
    assert time.monotonic() - start >= 1.0
    assert [r.status for r in gh.requests("GET")] == [403, 200]
    assert [r.status for r in gh.requests("POST", "/statuses/")] == [429, 201]


def test_bad_token_is_one_line_exit_3_and_never_printed(gh, env, capsys, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_wrong_" + TOKEN)
    code, out, err = run_cli(capsys, *comment_args(write_doc(env, DOC)))
    assert code == 3
    assert len(err.strip().splitlines()) == 1
    assert "401" in err and "credentials" in err
    assert TOKEN not in out + err
    assert len(gh.requests()) == 1  # a 401 is not retried


def test_token_echoed_by_the_server_is_scrubbed(gh, env, capsys, monkeypatch):
    gh.fail("GET", r"/comments$", 403, body={"message": f"Resource not accessible by integration\n{TOKEN}"})
    code, out, err = run_cli(capsys, *comment_args(write_doc(env, DOC)))
    assert code == 3
    assert err.startswith("error: GitHub GET /repos/org/project/issues/7/comments: HTTP 403")
    assert len(err.strip().splitlines()) == 1
    assert TOKEN not in out + err and "***" in err


def test_unknown_repo_is_a_usage_error(gh, env, capsys, monkeypatch):
    path = write_doc(env, DOC)
    code, _, err = run_cli(capsys, "comment", "--repo", "org/nope", "--pr", "7", "--verdicts", str(path))
    assert code == 2
    assert "HTTP 404" in err and len(err.strip().splitlines()) == 1


def test_unprocessable_status_is_a_usage_error(gh, env, capsys, monkeypatch):
    gh.fail("POST", r"/statuses/", 422, body={"message": "Validation Failed", "errors": [{"code": "custom"}]})
    code, _, err = run_cli(capsys, *comment_args(write_doc(env, DOC)))
    assert code == 2
    assert "HTTP 422" in err and "Validation Failed" in err


def test_rate_limit_too_far_away_fails_without_waiting(gh, env, capsys, monkeypatch):
    reset = str(int(time.time()) + 3600)
    gh.fail("GET", r"/comments$", 403, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset}, times=9)
    start = time.monotonic()
    code, _, err = run_cli(capsys, *comment_args(write_doc(env, DOC)))
    assert code == 3
    assert time.monotonic() - start < 5
    assert "rate limited" in err
    assert len(gh.requests("GET")) == 1


def test_pending_sets_only_a_status(gh, env, capsys, monkeypatch):
    code, out, err = run_cli(capsys, "comment", "--repo", REPO, "--pr", "7", "--sha", SHA, "--pending")
    assert code == 0, err
    assert gh.statuses[0]["state"] == "pending"
    assert not gh.comments.get((REPO, 7))
    assert not (env / "summary.md").exists()


def test_infra_errors_give_error_status(gh, env, capsys, monkeypatch):
    doc = copy.deepcopy(DOC)
    doc["verdicts"] = doc["verdicts"][1:]
    doc["errors"] = [{"workload": "wan22", "status": "infra_error", "kind": "oom", "message": "out of memory"}]
    doc.pop("status")
    code, _, err = run_cli(capsys, *comment_args(write_doc(env, doc)))
    assert code == 0, err
    assert gh.statuses[0]["state"] == "error"
    assert "out of memory" in gh.comments[(REPO, 7)][0]["body"]


def test_missing_token_still_writes_summary(gh, env, capsys, monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN")
    code, _, err = run_cli(capsys, *comment_args(write_doc(env, DOC)))
    assert code == 2 and "GITHUB_TOKEN" in err
    assert "Performance regression" in (env / "summary.md").read_text()
    assert not gh.log


def test_bad_verdicts_file_names_the_file(env, capsys, monkeypatch):
    path = env / "bad.json"
    path.write_text("{not json")
    code, _, err = run_cli(capsys, *comment_args(path))
    assert code == 2 and str(path) in err


# --- the client on its own: bounded retries, recorded instead of slept ---------------------------------


def test_retries_are_bounded(gh):
    gh.fail("GET", r"/comments$", 500, times=100)
    waits: list[float] = []
    policy = RetryPolicy(attempts=4, base_delay=1.0, max_delay=3.0)
    with GitHub(REPO, token=TOKEN, api_url=gh.url, policy=policy, sleep=waits.append) as client:
        with pytest.raises(ServerError) as info:
            client.list_comments(7)
    assert len(gh.requests("GET")) == 4
    assert len(waits) == 3 and all(0.5 <= w <= 3.0 for w in waits)
    assert "HTTP 500" in str(info.value) and TOKEN not in str(info.value)


def test_create_gives_up_after_bounded_attempts(gh):
    gh.fail("POST", r"/issues/7/comments$", 503, times=100)
    waits: list[float] = []
    with GitHub(REPO, token=TOKEN, api_url=gh.url, policy=RetryPolicy(attempts=3), sleep=waits.append) as client:
        with pytest.raises(ServerError):
            client.upsert_comment(7, marker_for("x"), "body")
    assert len(gh.requests("POST")) == 3
    assert not gh.comments.get((REPO, 7))


def test_unreachable_server_is_infra_error():
    waits: list[float] = []
    with GitHub(
        REPO, token=TOKEN, api_url="http://127.0.0.1:9", policy=RetryPolicy(attempts=2), sleep=waits.append
    ) as c:
        with pytest.raises(InfraError) as info:
            c.list_comments(1)
    assert len(waits) == 1 and "cannot connect" in str(info.value)


def test_next_link_to_another_host_is_refused(gh):
    gh.per_page_max = 1
    for i in range(3):
        gh.add_comment(REPO, 7, f"c{i}")
    with GitHub(REPO, token=TOKEN, api_url=gh.url.replace("127.0.0.1", "localhost")) as client:
        with pytest.raises(InfraError, match="another host"):
            client.list_comments(7)


def test_bad_repo_and_sha_are_rejected_before_any_request(gh):
    with pytest.raises(InputError):
        GitHub("not-a-repo", token=TOKEN, api_url=gh.url)
    with GitHub(REPO, token=TOKEN, api_url=gh.url) as client:
        with pytest.raises(InputError):
            client.set_status("../../x", state="success", context="c", description="d")
        with pytest.raises(InputError):
            client.set_status(SHA, state="weird", context="c", description="d")
    assert not gh.log


def test_error_option_reports_an_infra_error(gh, env, capsys, monkeypatch):
    args = [
        "comment",
        "--repo",
        REPO,
        "--pr",
        "7",
        "--sha",
        SHA,
        "--lane",
        "nightly",
        "--error",
        "check exited 3",
    ]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert gh.statuses[0]["state"] == "error" and gh.statuses[0]["context"] == "perf-guardrail/nightly"
    body = gh.comments[(REPO, 7)][0]["body"]
    assert "Infrastructure error" in body and "check exited 3" in body


def test_huge_report_is_cut_to_fit_a_comment(gh):
    rows = []
    for i in range(1500):
        row = copy.deepcopy(DOC["verdicts"][0 if i < 3 else 1])
        row["workload"] = f"workload-{i:04d}"
        rows.append(row)
    from guardrail.reports.markdown import render_markdown

    body = render_markdown({**DOC, "verdicts": rows})
    assert len(body) > 65_536
    with GitHub(REPO, token=TOKEN, api_url=gh.url) as client:
        client.upsert_comment(7, marker_for("presubmit"), body)
    stored = gh.comments[(REPO, 7)][0]["body"]
    assert len(stored) <= 65_536
    assert stored.count("<details>") == stored.count("</details>")
    assert all(f"workload-{i:04d}" in stored for i in range(3))  # the regressions come first
    assert "truncated" in stored


def test_comment_deleted_between_list_and_edit_is_recreated(gh):
    gh.add_comment(REPO, 7, marker_for("presubmit") + "\nold", type_="Bot")
    gh.fail("PATCH", r"/issues/comments/", 404, body={"message": "Not Found"})
    with GitHub(REPO, token=TOKEN, api_url=gh.url) as client:
        # The fake still lists the old comment, so the second try edits it: no duplicate either way.
        result = client.upsert_comment(7, marker_for("presubmit"), "new report")
    assert result.action == "updated"
    assert len(gh.comments[(REPO, 7)]) == 1 and gh.comments[(REPO, 7)][0]["body"].endswith("new report")


def test_moved_repository_is_a_usage_error(gh):
    gh.fail("GET", r"/comments$", 301, headers={"location": f"{gh.url}/repositories/42/issues/7/comments"})
    with GitHub(REPO, token=TOKEN, api_url=gh.url) as client:
        with pytest.raises(InputError, match="HTTP 301 moved to /repositories/42"):
            client.list_comments(7)


def test_the_comment_says_what_changed_since_the_previous_push(gh, env, capsys):
    earlier = json.loads(json.dumps(DOC))
    earlier["run"]["commit"] = "1" * 40
    earlier["verdicts"][0]["verdict"] = "no_change"
    code, out, err = run_cli(
        capsys, *comment_args(write_doc(env, DOC), "--previous", str(write_doc(env, earlier, "p.json")))
    )
    assert code == 0, err
    body = gh.comments[(REPO, 7)][0]["body"]
    assert (
        r"**Since the previous push** (`1111111111`): new: wan22-ti2v-5b-720p denoise\_step\_latency (regression)."
        in body
    )
    bad = run_cli(capsys, *comment_args(write_doc(env, DOC), "--previous", str(env / "absent.json")))
    assert bad[0] == 2 and "absent.json" in bad[2]
