"""Ingest: validate everything first, one transaction, idempotent, bad input exits 2 with nothing written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from guardrail.errors import InputError
from guardrail.ingest import ingest
from guardrail.store import models as m
from guardrail.store.db import session_scope
from tests.factories import result_doc, write


def _count(url, model) -> int:
    with session_scope(url) as s:
        return s.scalar(select(func.count()).select_from(model))


def test_ingest_stores_repeat_structure(db_url, tmp_path):
    doc = result_doc(metrics={"denoise_step_latency": [[1.0, 2.0, 3.0], [4.0, 5.0]], "peak_memory": [[100.0]]})
    report = ingest(db_url, [write(tmp_path / "r.json", doc)])
    assert len(report.stored) == 1 and not report.skipped
    with session_scope(db_url) as s:
        ms = s.scalars(select(m.Measurement).order_by(m.Measurement.id)).all()
        assert [(x.repeat_index, x.n) for x in ms] == [(0, 3), (1, 2), (0, 1)]
        assert ms[1].values().tolist() == [4.0, 5.0]
        assert ms[0].median == 2.0
        series = s.scalars(select(m.Series)).all()
        assert {x.metric for x in series} == {"denoise_step_latency", "peak_memory"}
        run = s.scalars(select(m.Run)).one()
        assert run.lane == "nightly" and run.hardware == "H100" and run.commit.sha == "c0ffee"
        assert run.started_at.tzinfo is not None


def test_reingest_is_a_noop_and_says_so(db_url, tmp_path):
    f = write(tmp_path / "r.json", result_doc(run_id="77"))
    first = ingest(db_url, [f])
    second = ingest(db_url, [f])
    assert len(first.stored) == 1
    assert second.stored == [] and len(second.skipped) == 1
    assert "already stored" in second.skipped[0]["reason"]
    assert _count(db_url, m.Result) == 1 and _count(db_url, m.Measurement) == 1


def test_results_of_one_run_share_the_run(db_url, tmp_path):
    a = write(tmp_path / "a.json", result_doc(workload="a", run_id="9"))
    b = write(tmp_path / "b.json", result_doc(workload="b", run_id="9"))
    report = ingest(db_url, [tmp_path])
    assert len(report.stored) == 2 and report.run_ids == [report.stored[0]["run_id"]]
    assert a.exists() and b.exists()


def test_failed_result_is_stored_with_its_error(db_url, tmp_path):
    doc = result_doc(status="infra_error", error={"kind": "oom", "message": "NPU out of memory"}, metrics={})
    ingest(db_url, [write(tmp_path / "r.json", doc)])
    with session_scope(db_url) as s:
        r = s.scalars(select(m.Result)).one()
        assert (r.status, r.error_kind) == ("infra_error", "oom")


BAD = {
    "malformed.json": ("{not json", "not valid JSON"),
    "version.json": ({**result_doc(), "schema": "guardrail.result/v9"}, "$.schema: unknown schema version"),
    "missing.json": ({k: v for k, v in result_doc().items() if k != "workload"}, "$.workload: required"),
    "nan.json": (
        result_doc(metrics={"x": [[1.0, float("nan")]]}),
        "$.metrics[0].repeats[0][1]: sample is NaN",
    ),
    "inf.json": (result_doc(metrics={"x": [[float("inf")]]}), "$.metrics[0].repeats[0][0]: sample is NaN"),
    "text.json": (
        result_doc(metrics={"x": [[1.0, "fast"]]}),
        "$.metrics[0].repeats[0][1]: sample must be a number",
    ),
    "empty_repeat.json": (result_doc(metrics={"x": [[]]}), "$.metrics[0].repeats[0]"),
    "no_repeats.json": (result_doc(metrics={"x": []}), "$.metrics[0].repeats"),
    "status.json": (result_doc(status="failed", metrics={}), "no 'error' object"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_names_file_and_field_and_writes_nothing(db_url, tmp_path, name):
    content, expected = BAD[name]
    good = write(tmp_path / "a_good.json", result_doc())
    bad = tmp_path / f"b_{name}"
    bad.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(InputError) as err:
        ingest(db_url, [good, bad])
    msg = str(err.value)
    assert msg.startswith(str(bad)) and expected in msg and "\n" not in msg
    assert _count(db_url, m.Result) == 0 and _count(db_url, m.Run) == 0


def test_duplicate_metric_names_refused(tmp_path, sqlite_url):
    doc = result_doc()
    doc["metrics"].append(dict(doc["metrics"][0]))
    with pytest.raises(InputError, match=r"metric 'denoise_step_latency' appears twice"):
        ingest(sqlite_url, [write(tmp_path / "dup.json", doc)])


def test_huge_file_refused_before_parsing(tmp_path, sqlite_url):
    big = tmp_path / "big.json"
    with big.open("wb") as f:  # a sparse 200 MB file: size is checked before any byte is read
        f.truncate(200 * 1024 * 1024)
    with pytest.raises(InputError, match=r"big.json: file is 200 MiB, over the 64 MiB limit"):
        ingest(sqlite_url, [big])


def test_cli_exit_codes_and_nothing_written(tmp_path):
    db = tmp_path / "g.db"
    bad = write(tmp_path / "bad.json", result_doc(metrics={"x": [[1.0, "x"]]}))
    proc = subprocess.run(
        [sys.executable, "-m", "guardrail", "ingest", str(bad), "--db", f"sqlite:///{db}"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(f"error: {bad}: $.metrics[0].repeats[0][1]")
    assert len(proc.stderr.strip().splitlines()) == 1
    ok = write(tmp_path / "ok.json", result_doc())
    proc = subprocess.run(
        [sys.executable, "-m", "guardrail", "ingest", str(ok), "--db", f"sqlite:///{db}"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "1 stored, 0 already there" in proc.stdout


def test_explicit_format_ignores_other_files_in_a_directory_but_not_a_named_one(corpus, tmp_path):
    """The README's corpus example: with --format, a directory's files of another format (the alerts file, the
    TTS benchmarks) are listed as ignored and nothing is stored from them; a file named explicitly must be of it."""
    db = f"sqlite:///{tmp_path / 'g.db'}"
    cli = [sys.executable, "-m", "guardrail", "ingest", "--format", "vllm-omni-diffusion", "--branch", "main"]
    proc = subprocess.run([*cli, str(corpus), "--db", db, "--output", "json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    ignored = sorted(i["file"].rsplit("/", 1)[1] for i in report["ignored"])
    assert ignored[0] == "alerts.json" and len(ignored) == 8
    assert all(name.startswith("result_test_qwen3_tts_") for name in ignored[1:])
    assert {i["reason"] for i in report["ignored"]} == {"not a vllm-omni-diffusion file"}
    stored = {s["file"] for s in report["stored"]}
    assert len(report["stored"]) == 276 and not stored & {i["file"] for i in report["ignored"]}
    assert all(f.rsplit("/", 1)[1].startswith("diffusion_result_") for f in stored)
    with session_scope(db) as s:
        assert s.scalar(select(func.count()).select_from(m.Result)) == 276
        assert (
            s.scalar(select(func.count()).select_from(m.Result).where(m.Result.source_format != "vllm-omni-diffusion"))
            == 0
        )

    alerts = corpus / "vllm-omni-nightly" / "alerts.json"
    proc = subprocess.run([*cli, str(alerts), "--db", db], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: {alerts}: $: expected a JSON array")
