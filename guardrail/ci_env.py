"""Where a run comes from: commit, branch, PR and CI identity, from flags or the CI's environment."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from guardrail.schema import CIInfo, Source


def _git(*args: str, cwd: str | None = None) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _github_pr(env: dict[str, str]) -> tuple[int | None, str | None, str | None]:
    """PR number, base SHA and head SHA from the pull_request event payload, when there is one."""
    path = env.get("GITHUB_EVENT_PATH")
    if not path or not Path(path).is_file():
        return None, None, None
    try:
        event = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None, None, None
    pr = event.get("pull_request") or {}
    return pr.get("number"), (pr.get("base") or {}).get("sha"), (pr.get("head") or {}).get("sha")


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
    """Flags win over the GitHub Actions environment, which wins over the local git checkout (`use_git`)."""
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
    elif run_id or attempt:
        ci = CIInfo(provider="local", run_id=run_id, attempt=attempt)
    message = None
    if commit is None and use_git:
        commit = _git("rev-parse", "HEAD", cwd=git_dir)
        if commit:
            branch = branch or _git("rev-parse", "--abbrev-ref", "HEAD", cwd=git_dir)
            message = _git("log", "-1", "--format=%s", cwd=git_dir)
    return Source(repo=repo, commit=commit, branch=branch, pr=pr, base_commit=base_commit, ci=ci, message=message)
