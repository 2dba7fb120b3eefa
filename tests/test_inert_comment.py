"""PR comment text is inert (issue 13 point 8): names and messages from result files make no link, mention
or cross-reference on GitHub; only CI URLs on the run's own provider host are linked."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys

import pytest
from markdown_it import MarkdownIt

from guardrail.reports.markdown import escape_md, render_markdown
from tests.githubfake import TOKEN, FakeGitHub

HOSTILE = "see https://evil.example/x www.evil.example @someone org/other#5 <b>x</b>"
SHA = "e" * 40

# What GitHub turns into links, mentions and references in a rendered comment's text (its autolink
# extension, its mention filter and its issue-reference filter), written as patterns over the text.
GITHUB_LINKIFIES = {
    "url": re.compile(r"[a-z][a-z0-9+.-]*://", re.I),
    "www": re.compile(r"\bwww\.", re.I),
    "mention": re.compile(r"(?<![\w`])@[A-Za-z0-9]"),
    "reference": re.compile(r"(?:\b[\w.-]+/[\w.-]+)?#\d+|\bGH-\d+", re.I),
    "email": re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"),
}


def doc(name: str, *, url: str | None = None) -> dict:
    return {
        "schema": "guardrail.verdicts/v1",
        "run": {"id": 3, "lane": "presubmit", "commit": SHA, "hardware": [name], "url": url},
        "verdicts": [
            {
                "workload": name,
                "metric": name,
                "hardware": name,
                "verdict": "regression",
                "change": 0.05,
                "ci": [0.03, 0.07],
                "unit": "ms",
                "baseline": {"runs": 10, "median": 1000.0},
                "candidate": {"repeats": 2, "median": 1050.0},
                "explanation": f"note: {name}",
            }
        ],
        "errors": [{"workload": name, "status": "failed", "kind": name, "message": f"test {name} failed: {name}"}],
        "status": "failure",
    }


def rendered(md: str) -> tuple[str, list[str]]:
    """The comment's visible text and its link targets, as a CommonMark renderer (GitHub's base) makes them."""
    page = MarkdownIt("commonmark").enable("table").render(md)
    links = re.findall(r'<a href="([^"]*)"', page)
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    return text, links


def test_a_hostile_workload_name_renders_inert():
    md = render_markdown(doc(HOSTILE))
    text, links = rendered(md)
    for what, pattern in GITHUB_LINKIFIES.items():
        assert not pattern.search(text), f"{what}: {pattern.search(text)!r} in {text!r}"
    assert links == []
    assert "<b>" not in md
    # It still reads as written: only zero-width spaces were added.
    assert HOSTILE in text.replace("\u200b", "")


@pytest.mark.parametrize(
    "name",
    ["ping @org/team now", "fixes #12", "GH-7", "mailto a@b.example", "ftp://files.example/x", "WWW.Evil.Example"],
)
def test_every_trigger_is_defused(name):
    text, links = rendered(escape_md(name))
    assert not any(p.search(text) for p in GITHUB_LINKIFIES.values()), text
    assert links == []
    assert text.replace("\u200b", "").strip() == name


@pytest.mark.parametrize(
    ("url", "linked"),
    [
        ("https://github.com/org/project/actions/runs/123", True),
        ("https://github.com/org/project/actions/runs/123/job/9", True),
        ("https://buildkite.com/vllm/vllm-omni/builds/4567", True),
        ("https://evil.example/org/project/actions/runs/123", False),
        ("https://github.com.evil.example/org/project/actions/runs/123", False),
        ("https://user@github.com/org/project/actions/runs/123", False),
        ("https://github.com:8443/org/project/actions/runs/123", False),
        ("http://github.com/org/project/actions/runs/123", False),
        ("https://github.com/org/project/issues/5", False),
        ("https://ghe.corp.example/org/project/actions/runs/1", False),  # no GHE host configured
    ],
)
def test_only_ci_urls_of_the_providers_hosts_are_linked(url, linked):
    md = render_markdown(doc("w", url=url))
    _, links = rendered(md)
    assert (url in links) is linked, links
    if not linked:
        assert "CI job" not in md


def test_the_configured_github_enterprise_host_is_linked():
    url = "https://ghe.corp.example/org/project/actions/runs/1"
    _, links = rendered(render_markdown(doc("w", url=url), github_server_url="https://ghe.corp.example"))
    assert url in links
    _, links = rendered(render_markdown(doc("w", url=url), github_server_url="https://other.example"))
    assert url not in links


def test_the_posted_comment_and_status_are_inert(tmp_path):
    path = tmp_path / "verdicts.json"
    path.write_text(json.dumps(doc(HOSTILE, url="https://evil.example/x")))
    with FakeGitHub() as gh:
        env = {**os.environ, "GITHUB_API_URL": gh.url, "GITHUB_TOKEN": TOKEN}
        env.pop("GITHUB_STEP_SUMMARY", None)
        args = ["comment", "--repo", "org/project", "--pr", "7", "--sha", SHA, "--verdicts", str(path)]
        proc = subprocess.run(
            [sys.executable, "-m", "guardrail", *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        body = gh.comments[("org/project", 7)][0]["body"]
    text, links = rendered(body)
    assert not any(p.search(text) for p in GITHUB_LINKIFIES.values()), text
    assert links == []
