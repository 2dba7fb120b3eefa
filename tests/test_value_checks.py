"""Impossible values are bad input (issue 13 point 5): a zero or negative latency, duration or throughput and a
negative memory size are refused with the file and JSON path, on SQLite and PostgreSQL, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from guardrail.errors import InputError
from guardrail.ingest import ingest
from guardrail.schema import parse_result
from guardrail.store import models as m
from guardrail.store.db import session_scope
from tests.factories import result_doc, write


def _metric(unit, reps, **kw):
    doc = result_doc()
    doc["metrics"] = [{"name": "m", "unit": unit, "direction": "lower_is_better", "repeats": reps, **kw}]
    return doc


def _results(url) -> int:
    with session_scope(url) as s:
        return s.scalar(select(func.count()).select_from(m.Result)) or 0


@pytest.mark.parametrize(
    ("unit", "reps", "where"),
    [
        ("ms", [[5.0, 0.0]], "$.metrics[0].repeats[0][1]"),
        ("s", [[1.0], [-2.0]], "$.metrics[0].repeats[1][0]"),
        ("tok/s", [[0.0]], "$.metrics[0].repeats[0][0]"),
        ("MiB", [[-1.0]], "$.metrics[0].repeats[0][0]"),
    ],
)
def test_impossible_values_are_refused_naming_the_sample(db_url, tmp_path, unit, reps, where):
    f = write(tmp_path / "r.json", _metric(unit, reps))
    with pytest.raises(InputError) as exc:
        ingest(db_url, [f])
    assert exc.value.file == str(f) and exc.value.field == where, str(exc.value)
    assert _results(db_url) == 0


def test_zero_memory_is_a_measurement_and_may_be_zero_allows_zero(db_url, tmp_path):
    write(tmp_path / "d" / "a.json", _metric("MiB", [[0.0, 10.0]]))
    b = result_doc(workload="other")
    b["metrics"] = [
        {"name": "retries", "unit": "ms", "direction": "lower_is_better", "repeats": [[0.0, 3.0]], "may_be_zero": True}
    ]
    write(tmp_path / "d" / "b.json", b)
    report = ingest(db_url, [tmp_path / "d"])
    assert len(report.stored) == 2 and _results(db_url) == 2


def test_may_be_zero_still_refuses_negative():
    with pytest.raises(InputError, match=r"non-negative") as exc:
        parse_result(json.dumps(_metric("ms", [[-1.0]], may_be_zero=True)))
    assert exc.value.field == "$.metrics[0].repeats[0][0]"


def test_units_of_no_known_kind_are_only_required_finite():
    assert parse_result(json.dumps(_metric("x", [[-0.5, 0.0]]))).metrics[0].repeats == [[-0.5, 0.0]]


def test_cli_zero_latency_is_one_line_exit_2(tmp_path):
    f = write(tmp_path / "r.json", _metric("ms", [[0.0]]))
    proc = subprocess.run(
        [sys.executable, "-m", "guardrail", "ingest", str(f), "--db", f"sqlite:///{tmp_path / 'g.db'}"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1 and f"{f}: $.metrics[0].repeats[0][0]" in line and "may_be_zero" in line


def test_verdicts_document_writes_no_nan_or_infinity():
    from guardrail.verdicts import VerdictRow, VerdictsDoc

    row = VerdictRow(
        workload="w",
        metric="m",
        verdict="no_change",
        change=float("inf"),
        p_value=float("nan"),
        ci=(float("-inf"), 0.1),
    )
    doc = VerdictsDoc(verdicts=[row])
    text = json.dumps(doc.to_dict(), allow_nan=False)  # raises on NaN/Infinity
    (out,) = json.loads(text)["verdicts"]
    assert out["change"] is None and out["p_value"] is None and out["ci"] is None
    assert "Infinity" not in doc.model_dump_json() and "NaN" not in doc.model_dump_json()


def test_adapter_results_get_the_same_checks(db_url, tmp_path):
    bench = {"completed": 10, "duration": 12.5, "request_throughput": 0.8, "mean_ttft_ms": -3.0}
    f = write(tmp_path / "vllm_bench-20261120-050000.json", bench)
    with pytest.raises(InputError, match=r"mean_ttft_ms.*-3 ms: a latency or duration must be positive") as exc:
        ingest(db_url, [f], fmt="vllm-bench")
    assert exc.value.file == str(f) and "\n" not in str(exc.value)
    assert _results(db_url) == 0
