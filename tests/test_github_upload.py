"""guardrail.upload against a real loopback ingest endpoint (tests/githubfake.py serves /api/v1/ingest)."""

from __future__ import annotations

import json

import pytest

from guardrail.errors import InfraError, InputError
from guardrail.reports.github import RetryPolicy
from guardrail.upload import upload
from tests.githubfake import TOKEN, FakeGitHub
from tests.timeline import iso

RESULT = {
    "schema": "guardrail.result/v1",
    "run": {"lane": "presubmit", "started_at": iso(hours=-7), "source": {"repo": "org/project"}},
    "environment": {"hardware": "cpu", "device_type": "cpu", "device_count": 1, "software": {}},
    "workload": {"name": "tiny", "family": "wan2.2", "digest": "sha256:00", "spec": {}},
    "status": "ok",
    "metrics": [{"name": "latency", "unit": "ms", "direction": "lower_is_better", "repeats": [[1.0, 1.1]]}],
}


@pytest.fixture
def server():
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture
def results(tmp_path):
    out = tmp_path / "results"
    (out / "sub").mkdir(parents=True)
    (out / "b.json").write_text(json.dumps(RESULT))
    (out / "sub" / "a.json").write_text(json.dumps({**RESULT, "status": "timeout"}))
    (out / "junit.xml").write_text("<testsuite name='s'><testcase name='t'/></testsuite>")
    (out / "notes.txt").write_text("ignored")
    return out


def test_upload_posts_all_files_with_bearer_token(server, results):
    answer = upload(server.url, [results], token=TOKEN, fmt="auto")
    assert answer == {"stored": ["b.json", "junit.xml", "a.json"], "skipped": []}
    (req,) = server.requests("POST", "/api/v1/ingest")
    assert req.authorization == f"Bearer {TOKEN}"
    assert req.body["format"] == "auto"
    docs = {d["name"]: d["content"] for d in req.body["documents"]}
    assert docs["b.json"] == RESULT  # parsed JSON, not a string
    assert docs["a.json"]["status"] == "timeout"
    assert docs["junit.xml"].startswith("<testsuite")
    assert "notes.txt" not in docs


def test_server_under_a_path_prefix_and_5xx_retry(server, results):
    server.fail("POST", r"/api/v1/ingest$", 503)
    waits: list[float] = []
    answer = upload(server.url + "/", [results / "b.json"], token=TOKEN, sleep=waits.append)
    assert answer["stored"] == ["b.json"]
    assert [r.status for r in server.requests("POST")] == [503, 200]
    assert len(waits) == 1


def test_retries_are_bounded(server, results):
    server.fail("POST", r"/api/v1/ingest$", 500, times=50)
    waits: list[float] = []
    with pytest.raises(InfraError) as info:
        upload(server.url, [results], token=TOKEN, policy=RetryPolicy(attempts=3), sleep=waits.append)
    assert len(server.requests("POST")) == 3 and len(waits) == 2
    assert "HTTP 500" in str(info.value)


def test_wrong_token_is_one_line_and_secret_free(server, results):
    secret = "guardrail_secret_" + "x" * 20
    with pytest.raises(InfraError) as info:
        upload(server.url, [results], token=secret)
    msg = str(info.value)
    assert "401" in msg and "\n" not in msg and secret not in msg
    assert len(server.requests()) == 1


def test_rejected_payload_is_input_error(server, results):
    server.fail("POST", r"/api/v1/ingest$", 422, body={"detail": [{"loc": ["body", "documents"], "msg": "bad"}]})
    with pytest.raises(InputError, match="body.documents: bad"):
        upload(server.url, [results], token=TOKEN)


def test_bad_files_fail_before_any_request(server, tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text("{")
    with pytest.raises(InputError, match="broken.json"):
        upload(server.url, [bad], token=TOKEN)
    with pytest.raises(InputError, match="no such file"):
        upload(server.url, [tmp_path / "missing.json"], token=TOKEN)
    with pytest.raises(InputError, match="no result files"):
        upload(server.url, [tmp_path / "empty"] if (tmp_path / "empty").mkdir() is None else [], token=TOKEN)
    with pytest.raises(InputError, match="http"):
        upload("ftp://x", [bad], token=TOKEN)
    assert not server.log
