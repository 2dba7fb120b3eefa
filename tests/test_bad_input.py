"""Every bad input of issue 13 point 7 is bad input: one line naming the file and JSON path, exit 2, nothing
written, the same on SQLite and PostgreSQL (validation happens in the schema, before the database)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from guardrail.errors import InputError
from guardrail.ingest import ingest
from guardrail.store import models as m
from guardrail.store.db import session_scope
from guardrail.upload import build_payload, clean_token
from tests.cli_inprocess import run_cli
from tests.factories import result_doc, write
from tests.test_github_server_flow import service  # noqa: F401 (a fixture)


def _with(path: tuple, value):
    doc = copy.deepcopy(result_doc())
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


CASES = {
    "huge-int": (("environment", "device_count"), 10**30, "$.environment.device_count"),
    "string-int": (("environment", "device_count"), "2", "$.environment.device_count"),
    "year-1": (("run", "started_at"), "0001-01-01T00:00:00+01:00", "$.run.started_at"),
    "year-9999": (("run", "started_at"), "9999-12-31T23:59:59-01:00", "$.run.started_at"),
    "long-hardware": (("environment", "hardware"), "H" * 201, "$.environment.hardware"),
    "long-lane": (("run", "lane"), "l" * 51, "$.run.lane"),
    "nul-name": (("workload", "name"), "wan\x00", "$.workload.name"),
    "nul-in-spec": (("workload", "spec"), {"prompt": "a\x00b"}, "$.workload.spec.prompt"),
    "cr-name": (("workload", "name"), "wan\r22", "$.workload.name"),
    "tab-metric-unit": (("environment", "device_type"), "cu\tda", "$.environment.device_type"),
    "huge-int-in-extra": (("environment", "extra"), {"n": 10**30}, "$.environment.extra.n"),
}


def _results(url) -> int:
    with session_scope(url) as s:
        return s.scalar(select(func.count()).select_from(m.Result)) or 0


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_value_is_input_error_naming_file_and_path(db_url, tmp_path, case):
    where, value, field = CASES[case]
    write(tmp_path / "ok.json", result_doc(workload="fine"))
    bad = write(tmp_path / "bad.json", _with(where, value))
    with pytest.raises(InputError) as exc:
        ingest(db_url, [tmp_path / "ok.json", bad])
    assert exc.value.file == str(bad) and exc.value.field == field, str(exc.value)
    assert "\n" not in str(exc.value)
    assert _results(db_url) == 0


def test_deep_json_is_one_line_exit_2(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    nested = write(tmp_path / "nested.json", _with(("extra",), json.loads("[" * 200 + "]" * 200)))
    db = tmp_path / "g.db"
    for f in (deep, nested):
        proc = subprocess.run(
            [sys.executable, "-m", "guardrail", "ingest", str(f), "--db", f"sqlite:///{db}"],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2, proc.stderr[-500:]
        line = proc.stderr.strip()
        assert len(line.splitlines()) == 1 and f"{f}: $" in line and "deep" in line, line
    assert not db.exists() or _results(f"sqlite:///{db}") == 0


def test_cli_string_device_count_exit_2(tmp_path):
    bad = write(tmp_path / "bad.json", _with(("environment", "device_count"), "2"))
    proc = subprocess.run(
        [sys.executable, "-m", "guardrail", "ingest", str(bad), "--db", f"sqlite:///{tmp_path / 'g.db'}"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and f"{bad}: $.environment.device_count" in proc.stderr, proc.stderr


def test_token_with_trailing_newline_is_stripped_and_inner_whitespace_refused():
    assert clean_token("gr_abc123\n") == "gr_abc123"
    assert clean_token("  \n") is None
    with pytest.raises(InputError, match=r"GUARDRAIL_TOKEN"):
        clean_token("gr_abc\r\n123")


def test_stray_json_in_a_directory_is_left_out_of_an_upload_as_ingest_ignores_it(sqlite_url, tmp_path):
    d = tmp_path / "d"
    write(d / "result.json", result_doc())
    write(d / "package.json", {"name": "not-a-result", "version": "1.0.0"})
    report = ingest(sqlite_url, [d])
    assert [i["file"] for i in report.ignored] == [str(d / "package.json")]
    ignored: list = []
    payload = build_payload([d], "auto", ignored)
    assert [doc["name"] for doc in payload["documents"]] == ["result.json"]
    assert ignored == report.ignored
    # Named explicitly, it is sent, and the service says what is wrong with it.
    assert [doc["name"] for doc in build_payload([d / "package.json"], "auto")["documents"]] == ["package.json"]


# Through the service (`service`: the real app under uvicorn on loopback): the same bad inputs are HTTP 422 with
# the same message, exit 2 from the client.


@pytest.mark.parametrize("case", ["huge-int", "string-int", "year-1", "nul-name", "cr-name", "long-hardware"])
def test_service_answers_422_with_the_local_message(service, tmp_path, capsys, monkeypatch, case):  # noqa: F811
    url, db, token = service
    where, value, field = CASES[case]
    bad = write(tmp_path / "bad.json", _with(where, value))
    with pytest.raises(InputError) as local:
        ingest(f"sqlite:///{tmp_path / 'local.db'}", [bad])
    monkeypatch.setenv("GUARDRAIL_TOKEN", token)
    code, out, err = run_cli(capsys, "ingest", "--server", url, str(bad))
    assert code == 2, err
    assert "HTTP 422" in err and f"bad.json: {field}: {local.value.detail}" in err, err
    assert len(err.strip().splitlines()) == 1
    assert _results(db) == 0


def test_service_upload_ignores_stray_json_and_takes_a_token_with_a_newline(service, tmp_path, capsys, monkeypatch):  # noqa: F811
    url, db, token = service
    d = tmp_path / "d"
    write(d / "result.json", result_doc())
    write(d / "package.json", {"name": "not-a-result"})
    monkeypatch.setenv("GUARDRAIL_TOKEN", token + "\n")
    code, out, err = run_cli(capsys, "ingest", "--server", url, str(d))
    assert code == 0, err
    assert "1 stored" in out and f"ignored  {d / 'package.json'}: not a result file of any known format" in out
    assert _results(db) == 1


def test_deep_json_through_server_is_refused_before_sending(service, tmp_path, capsys, monkeypatch):  # noqa: F811
    url, _, token = service
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    monkeypatch.setenv("GUARDRAIL_TOKEN", token)
    code, _, err = run_cli(capsys, "ingest", "--server", url, str(deep))
    assert code == 2 and f"{deep}: $" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 413, 422])
def test_upload_never_retries_a_4xx(tmp_path, code):
    from guardrail.errors import GuardrailError
    from guardrail.upload import upload
    from tests.githubfake import TOKEN, FakeGitHub

    f = write(tmp_path / "r.json", result_doc())
    with FakeGitHub() as fake:
        fake.fail("POST", r"/api/v1/ingest$", code, body={"detail": "r.json: $.run.lane: too long"}, times=5)
        waits: list[float] = []
        with pytest.raises(GuardrailError) as exc:
            upload(fake.url, [f], token=TOKEN, sleep=waits.append)
        assert len(fake.requests("POST")) == 1 and not waits
    assert "\n" not in str(exc.value) and TOKEN not in str(exc.value)
    if code == 422:
        assert isinstance(exc.value, InputError) and exc.value.exit_code == 2
        assert "r.json: $.run.lane: too long" in str(exc.value)


def test_upload_retries_429_and_5xx(tmp_path):
    from guardrail.upload import upload
    from tests.githubfake import TOKEN, FakeGitHub

    f = write(tmp_path / "r.json", result_doc())
    with FakeGitHub() as fake:
        fake.fail("POST", r"/api/v1/ingest$", 503, times=1)
        fake.fail("POST", r"/api/v1/ingest$", 429, headers={"retry-after": "1"}, times=1)
        waits: list[float] = []
        upload(fake.url, [f], token=TOKEN, sleep=waits.append)
        assert [r.status for r in fake.requests("POST")] == [503, 429, 200] and len(waits) == 2
