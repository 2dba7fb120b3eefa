"""A PR's title and author, from the CI that ran it, into the result files and the dashboard's PR list."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from guardrail.ci_env import pr_details, source_from_env
from tests.test_buildkite_ci_env import bk_env

CORPUS = Path("/work/shared/corpus/vllm-omni-nightly/buildkite_nightly_raw")
SHA = "b" * 40


def _event(tmp_path: Path, **pr) -> dict[str, str]:
    event = tmp_path / "event.json"
    body = {"number": 7, "base": {"sha": "a" * 40}, "head": {"sha": SHA}, **pr}
    event.write_text(json.dumps({"pull_request": body}))
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "org/p",
        "GITHUB_RUN_ID": "5",
        "GITHUB_EVENT_PATH": str(event),
    }


def test_github_event_names_title_and_author(tmp_path):
    env = _event(tmp_path, title="Speed up <VAE> decode", user={"login": "octo"})
    assert pr_details(env) == {"title": "Speed up <VAE> decode", "author": "octo"}


def test_buildkite_names_the_author_only():
    assert pr_details(bk_env(BUILDKITE_BUILD_AUTHOR="Ada")) == {"author": "Ada"}
    assert pr_details(bk_env(BUILDKITE_PULL_REQUEST="false", BUILDKITE_BUILD_AUTHOR="Ada")) is None


@pytest.mark.parametrize("payload", ["not json", json.dumps({"pull_request": "x"}), json.dumps([1])])
def test_an_unreadable_event_gives_nothing(tmp_path, payload):
    event = tmp_path / "event.json"
    event.write_text(payload)
    assert pr_details({"GITHUB_ACTIONS": "true", "GITHUB_EVENT_PATH": str(event)}) is None


def test_a_pr_run_carries_its_title_into_the_pr_list(tmp_path, monkeypatch, sqlite_url):
    files = sorted(CORPUS.glob("*/diffusion_result_test_wan22_i2v_vllm_omni*.json")) if CORPUS.is_dir() else []
    if not files:
        pytest.skip("vLLM-Omni corpus not available")
    from guardrail.ingest import ingest
    from runners import run_lane
    from web.app import create_app

    env = _event(tmp_path, title="Fuse the norm into attention", user={"login": "octo"})
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    sample = tmp_path / "bench_out.json"
    shutil.copy(files[0], sample)
    wdir = tmp_path / "w"
    wdir.mkdir()
    spec = {
        "name": "vllm-omni-wan-i2v",
        "family": "wan2.2",
        "lanes": ["presubmit"],
        "engine": "command",
        "command": {
            "argv": [sys.executable, "-c", f"import shutil; shutil.copy({str(sample)!r}, 'result.json')"],
            "output": "result.json",
            "adapter": "vllm-omni-diffusion",
        },
    }
    (wdir / "vllm-omni-wan-i2v.yaml").write_text(yaml.safe_dump(spec))
    source = source_from_env(use_git=False)
    assert source.pr == 7
    out = run_lane(
        "presubmit", device="cpu", out_dir=tmp_path / "out", progress=False, workloads_dir=wdir, source=source
    )
    assert json.loads(out[0].read_text())["extra"]["pr"] == {"title": "Fuse the norm into attention", "author": "octo"}
    ingest(sqlite_url, out)
    with TestClient(create_app(sqlite_url)) as c:
        row = next(p for p in c.get("/api/v1/prs").json() if p["pr"] == 7)
        page = c.get("/prs").text
    assert (row["title"], row["title_source"], row["author"]) == ("Fuse the norm into attention", "pr", "octo")
    assert "Fuse the norm into attention" in page and "octo" in page
