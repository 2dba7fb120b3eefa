"""Run identity from a Buildkite job's environment (guardrail.ci_env), beside GitHub Actions."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from guardrail.ci_env import buildkite_job, repo_slug, source_from_env
from guardrail.schema import Source

SHA = "a" * 40
JOB = "0190a5c8-3e2f-4a4e-9f3c-2d0c1f6b7e11"


def bk_env(**over: str) -> dict[str, str]:
    env = {
        "BUILDKITE": "true",
        "BUILDKITE_BUILD_ID": "0190a5c8-1111-4a4e-9f3c-2d0c1f6b7e11",
        "BUILDKITE_BUILD_NUMBER": "11865",
        "BUILDKITE_JOB_ID": JOB,
        "BUILDKITE_COMMIT": SHA,
        "BUILDKITE_BRANCH": "feature/x",
        "BUILDKITE_PULL_REQUEST": "42",
        "BUILDKITE_PULL_REQUEST_BASE_BRANCH": "main",
        "BUILDKITE_RETRY_COUNT": "0",
        "BUILDKITE_BUILD_URL": "https://buildkite.com/vllm/vllm-omni/builds/11865",
        "BUILDKITE_PIPELINE_SLUG": "vllm-omni",
        "BUILDKITE_ORGANIZATION_SLUG": "vllm",
        "BUILDKITE_AGENT_META_DATA_QUEUE": "a3_npu_4",
        "BUILDKITE_REPO": "git@github.com:vllm-project/vllm-omni.git",
    }
    env.update(over)
    return env


def test_buildkite_identity():
    src = source_from_env(env=bk_env(), use_git=False)
    assert src.repo == "vllm-project/vllm-omni"
    assert (src.commit, src.branch, src.pr) == (SHA, "feature/x", 42)
    assert src.ci is not None
    assert src.ci.provider == "buildkite"
    assert src.ci.run_id == "11865"  # the build number, not the build's UUID
    assert src.ci.attempt == 1
    assert src.ci.url == f"https://buildkite.com/vllm/vllm-omni/builds/11865#{JOB}"
    assert src.ci.queue == "a3_npu_4"


def test_not_a_pull_request_and_a_retry():
    src = source_from_env(env=bk_env(BUILDKITE_PULL_REQUEST="false", BUILDKITE_RETRY_COUNT="2"), use_git=False)
    assert src.pr is None
    assert src.ci is not None and src.ci.attempt == 3


@pytest.mark.parametrize("value", ["", "false", "0", "abc"])
def test_pull_request_values_that_are_not_a_number(value):
    assert buildkite_job(bk_env(BUILDKITE_PULL_REQUEST=value)).pr is None


def test_flags_win_over_the_environment():
    src = source_from_env(commit="b" * 40, pr=7, run_id="r1", attempt=5, env=bk_env(), use_git=False)
    assert (src.commit, src.pr) == ("b" * 40, 7)
    assert src.ci is not None and (src.ci.run_id, src.ci.attempt) == ("r1", 5)


def test_head_is_not_a_commit(tmp_path):
    """A build started by hand may say BUILDKITE_COMMIT=HEAD: the checkout's SHA is used instead."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(tmp_path),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "first",
        ],
        check=True,
    )
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    src = source_from_env(env=bk_env(BUILDKITE_COMMIT="HEAD"), git_dir=str(tmp_path))
    assert src.commit == head.strip()
    assert source_from_env(env=bk_env(BUILDKITE_COMMIT="HEAD"), use_git=False).commit is None


def test_merge_base_from_the_base_branch(tmp_path):
    """Buildkite names the PR's base branch, not a SHA: the merge-base comes from the checkout."""
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@e"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(tmp_path)], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "base"], check=True)
    base = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    subprocess.run([*git, "checkout", "-q", "-b", "feature"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "change"], check=True)
    subprocess.run([*git, "checkout", "-q", "main"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "main moved"], check=True)
    subprocess.run([*git, "checkout", "-q", "feature"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    src = source_from_env(env=bk_env(BUILDKITE_COMMIT=head), git_dir=str(tmp_path))
    assert src.base_commit == base
    # Not a PR: no base commit guessed.
    src = source_from_env(env=bk_env(BUILDKITE_COMMIT=head, BUILDKITE_PULL_REQUEST="false"), git_dir=str(tmp_path))
    assert src.base_commit is None


def test_github_actions_is_unchanged(tmp_path):
    env = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "org/p", "GITHUB_RUN_ID": "99", "GITHUB_SHA": SHA}
    src = source_from_env(env=env, use_git=False)
    assert src.ci is not None
    assert (src.ci.provider, src.ci.run_id, src.ci.attempt, src.ci.queue) == ("github-actions", "99", 1, None)
    assert src.ci.url == "https://github.com/org/p/actions/runs/99"


def test_queue_survives_a_result_file_round_trip():
    src = source_from_env(env=bk_env(), use_git=False)
    again = Source.model_validate_json(src.model_dump_json())
    assert again.ci is not None and again.ci.queue == "a3_npu_4"


@pytest.mark.parametrize(
    ("url", "slug"),
    [
        ("git@github.com:vllm-project/vllm-omni.git", "vllm-project/vllm-omni"),
        ("https://github.com/vllm-project/vllm-omni.git", "vllm-project/vllm-omni"),
        ("https://github.com/vllm-project/vllm-omni", "vllm-project/vllm-omni"),
        ("ssh://git@github.example.org/org/name.git", "org/name"),
        ("/srv/git/name", None),
        ("", None),
    ],
)
def test_repo_slug(url, slug):
    assert repo_slug(url) == slug


def test_ingest_of_an_adapter_file_inside_a_buildkite_job_records_the_job(tmp_path):
    """`guardrail ingest` reads the CI's identity in a Buildkite job as it does in GitHub Actions."""
    import os
    import sys

    from sqlalchemy import create_engine, text

    corpus = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "vllm-omni-nightly" / "buildkite_nightly_raw"
    src = next((corpus / "11865").glob("diffusion_result_test_wan22_i2v_*.json"))
    db = f"sqlite:///{tmp_path / 'g.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "BUILDKITE"))}
    env.update(bk_env(BUILDKITE_RETRY_COUNT="1"))
    out = subprocess.run(
        [sys.executable, "-m", "guardrail", "ingest", "--db", db, str(src)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    with create_engine(db).connect() as c:
        row = c.execute(text("SELECT ci_provider, ci_run_id, pr FROM runs")).one()
    assert tuple(row) == ("buildkite", "11865", 42)  # the PR comes from the job's environment, not the file
