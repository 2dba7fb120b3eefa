"""Where a run comes from: commit, branch, PR and CI identity, from flags or the CI's environment."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from guardrail.schema import CIInfo, Source


def _git(*args: str, cwd: str | None = None) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _github_event_pr(env: dict[str, str]) -> dict:
    path = env.get("GITHUB_EVENT_PATH")
    if not path or not Path(path).is_file():
        return {}
    try:
        event = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    pr = event.get("pull_request") if isinstance(event, dict) else None
    return pr if isinstance(pr, dict) else {}


def pr_details(env: dict[str, str] | None = None) -> dict[str, str] | None:
    """The PR's title and author where the CI says them (the dashboard's PR list shows them; result files carry
    them as `extra.pr`): GitHub's pull_request event has both; Buildkite names the build's author only (the title
    then falls back to the commit subject). None outside a PR build."""
    env = dict(os.environ if env is None else env)
    out: dict[str, str] = {}
    if env.get("GITHUB_ACTIONS") == "true":
        pr = _github_event_pr(env)
        title, user = pr.get("title"), (pr.get("user") or {}).get("login")
        if isinstance(title, str) and title:
            out["title"] = title[:300]
        if isinstance(user, str) and user:
            out["author"] = user[:100]
    elif env.get("BUILDKITE") == "true" and buildkite_job(env).pr:
        author = env.get("BUILDKITE_BUILD_AUTHOR") or env.get("BUILDKITE_BUILD_CREATOR")
        if author:
            out["author"] = author[:100]
    return out or None


def _github_pr(env: dict[str, str]) -> tuple[int | None, str | None, str | None]:
    """PR number, base SHA and head SHA from the pull_request event payload, when there is one."""
    pr = _github_event_pr(env)
    return pr.get("number"), (pr.get("base") or {}).get("sha"), (pr.get("head") or {}).get("sha")


# git@github.com:org/name.git, https://github.com/org/name(.git), ssh://git@host/org/name.git -> org/name
_REPO_PATH = re.compile(r"^(?:[a-z+]+://(?:[^@/]+@)?[^/]+/|[^@:/]+@[^:]+:)(?P<path>[^/]+/[^/]+?)(?:\.git)?/?$")


def repo_slug(url: str | None) -> str | None:
    """OWNER/NAME of a clone URL (Buildkite's BUILDKITE_REPO); None when it is not of that shape."""
    m = _REPO_PATH.match((url or "").strip())
    return m.group("path") if m else None


@dataclass(frozen=True)
class BuildkiteJob:
    """What a Buildkite job's environment says about its run (buildkite.com/docs/pipelines/environment-variables)."""

    repo: str | None
    commit: str | None
    branch: str | None
    pr: int | None
    base_branch: str | None
    run_id: str | None
    attempt: int
    url: str | None
    queue: str | None
    pipeline: str | None
    organization: str | None


def buildkite_job(env: dict[str, str]) -> BuildkiteJob:
    """Run id is the build number (what people quote and what the build's URL ends with; BUILDKITE_BUILD_ID is
    a UUID); attempt is 1 + BUILDKITE_RETRY_COUNT (0 on a job's first run); the URL points at this job inside
    the build page. BUILDKITE_PULL_REQUEST is the PR number, or "false" when the build is not for a PR."""
    retries = env.get("BUILDKITE_RETRY_COUNT", "")
    url = env.get("BUILDKITE_BUILD_URL") or None
    job = env.get("BUILDKITE_JOB_ID") or None
    pr = env.get("BUILDKITE_PULL_REQUEST", "")
    commit = env.get("BUILDKITE_COMMIT") or None
    return BuildkiteJob(
        repo=repo_slug(env.get("BUILDKITE_REPO")),
        # A build started by hand may name the commit "HEAD": not a SHA, so it is left to the checkout.
        commit=None if commit in (None, "HEAD") else commit,
        branch=env.get("BUILDKITE_BRANCH") or None,
        pr=int(pr) if pr.isdigit() and int(pr) > 0 else None,
        base_branch=env.get("BUILDKITE_PULL_REQUEST_BASE_BRANCH") or None,
        run_id=env.get("BUILDKITE_BUILD_NUMBER") or None,
        attempt=int(retries) + 1 if retries.isdigit() else 1,
        url=f"{url}#{job}" if url and job else url,
        queue=env.get("BUILDKITE_AGENT_META_DATA_QUEUE") or None,
        pipeline=env.get("BUILDKITE_PIPELINE_SLUG") or None,
        organization=env.get("BUILDKITE_ORGANIZATION_SLUG") or None,
    )


def _merge_base(commit: str | None, base_branch: str, cwd: str | None) -> str | None:
    """The PR's merge-base with its base branch, from the checkout (Buildkite names the base branch, not a SHA)."""
    for ref in (f"origin/{base_branch}", base_branch):
        found = _git("merge-base", commit or "HEAD", ref, cwd=cwd)
        if found:
            return found
    return None


def source_from_env(
    *,
    repo: str | None = None,
    commit: str | None = None,
    branch: str | None = None,
    pr: int | None = None,
    base_commit: str | None = None,
    run_id: str | None = None,
    attempt: int | None = None,
    env: dict[str, str] | None = None,
    git_dir: str | None = None,
    use_git: bool = True,
) -> Source:
    """Flags win over the CI's environment (GitHub Actions or Buildkite), which wins over the local git
    checkout (`use_git`)."""
    env = dict(os.environ if env is None else env)
    ci = None
    if env.get("GITHUB_ACTIONS") == "true":
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        gh_repo = env.get("GITHUB_REPOSITORY")
        gh_run = env.get("GITHUB_RUN_ID")
        gh_pr, gh_base, gh_head = _github_pr(env)
        repo = repo or gh_repo
        commit = commit or gh_head or env.get("GITHUB_SHA")
        branch = branch or env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME")
        pr = pr or gh_pr
        base_commit = base_commit or gh_base
        run_id = run_id or gh_run
        attempt = attempt or int(env.get("GITHUB_RUN_ATTEMPT") or 1)
        url = f"{server}/{gh_repo}/actions/runs/{gh_run}" if gh_repo and gh_run else None
        ci = CIInfo(provider="github-actions", run_id=run_id, attempt=attempt, url=url)
    elif env.get("BUILDKITE") == "true":
        bk = buildkite_job(env)
        repo = repo or bk.repo
        commit = commit or bk.commit
        branch = branch or bk.branch
        pr = pr or bk.pr
        if base_commit is None and pr and bk.base_branch and use_git:
            base_commit = _merge_base(commit, bk.base_branch, git_dir)
        run_id = run_id or bk.run_id
        attempt = attempt or bk.attempt
        ci = CIInfo(provider="buildkite", run_id=run_id, attempt=attempt, url=bk.url, queue=bk.queue)
    elif run_id or attempt:
        ci = CIInfo(provider="local", run_id=run_id, attempt=attempt)
    message = None
    if commit is None and use_git:
        commit = _git("rev-parse", "HEAD", cwd=git_dir)
        if commit:
            branch = branch or _git("rev-parse", "--abbrev-ref", "HEAD", cwd=git_dir)
            message = _git("log", "-1", "--format=%s", cwd=git_dir)
    return Source(repo=repo, commit=commit, branch=branch, pr=pr, base_commit=base_commit, ci=ci, message=message)
