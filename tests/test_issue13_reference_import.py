"""Issue 13: a bad reference test-case file (guardrail.ingest.reference_import) is one line naming the file and
the JSON path, an InputError (exit 2), never a traceback; nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardrail.errors import InputError
from guardrail.ingest.reference_import import import_test_cases, load_reference_baselines


def _case(bp: dict, **extra) -> list[dict]:
    return [{"test_name": "test_x", "server_params": {"model": "m"}, "benchmark_params": [bp], **extra}]


GOOD = _case({"name": "b", "max-concurrency": [1, 4], "baseline": {"latency_mean": [27.6, 30.1]}})

# name -> (file text, the JSON path the message names, words of the message)
BAD: dict[str, tuple[str, str, str]] = {
    "not-json": ('[{"test_name": ', "", "not valid JSON"),
    "bad-utf8": ('[{"test_name": "\udcff"}]', "", "not valid JSON"),
    "deep-100k": ("[" * 100_000 + "]" * 100_000, "$", "nested"),
    "deep-100": ("[" * 100 + "]" * 100, "$" + "[0]" * 65, "nested more than 64 levels"),
    "huge-int": (json.dumps(_case({"name": "b", "baseline": {"latency_mean": 10**30}})), "latency_mean", "range"),
    "top-level-string": ('"hello"', "$", "expected a JSON array"),
    "case-not-object": ("[5]", "$[0]", "expected a JSON object"),
    "test-name-number": (json.dumps([{"test_name": 5, "benchmark_params": []}]), "$[0].test_name", "missing"),
    "bp-not-object": (json.dumps(_case("x")), "$[0].benchmark_params[0]", "expected a JSON object"),  # type: ignore[arg-type]
    "baseline-list": (json.dumps(_case({"name": "b", "baseline": [1]})), "benchmark_params[0].baseline", "object"),
    "name-dict": (json.dumps(_case({"name": {"a": 1}, "baseline": {"x": 1}})), "benchmark_params[0].name", "string"),
    "concurrency-dict": (
        json.dumps(_case({"name": "b", "max-concurrency": [{"a": 1}], "baseline": {"latency_mean": {"1": 2}}})),
        "benchmark_params[0].max-concurrency",
        "expected a number",
    ),
    "nan-literal": (
        '[{"test_name": "t", "benchmark_params": [{"name": "b", "baseline": {"latency_mean": NaN}}]}]',
        "$[0].benchmark_params[0].baseline.latency_mean",
        "not a finite number",
    ),
    "1e999": (
        '[{"test_name": "t", "benchmark_params": [{"name": "b", "baseline": {"latency_mean": [1e999]}}]}]',
        "$[0].benchmark_params[0].baseline.latency_mean[0]",
        "not a finite number",
    ),
    "negative-latency": (
        json.dumps(_case({"name": "b", "max-concurrency": 1, "baseline": {"latency_mean": {"1": -5}}})),
        "$[0].benchmark_params[0].baseline.latency_mean.1",
        "must be positive",
    ),
    "per-hardware-zero-throughput": (
        json.dumps(_case({"name": "b", "baseline": {"H100": {"throughput_qps": 0}}})),
        "$[0].benchmark_params[0].baseline.H100.throughput_qps",
        "must be positive",
    ),
    "newline-in-test-name": (
        json.dumps(_case({"name": "b", "baseline": {"latency_mean": 1}}, test_name="t\nschema: evil")),
        "$[0].benchmark_params[0].baseline",
        "control character",
    ),
    "long-metric": (
        json.dumps(_case({"name": "b", "baseline": {"m" * 201: 1}})),
        "$[0].benchmark_params[0].baseline." + "m" * 201,
        "longer than 200",
    ),
    "nul": (json.dumps(_case({"name": "b\x00", "baseline": {"x": 1}})), "$[0].benchmark_params[0].name", "NUL"),
}


def _write(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(BAD[name][0], encoding="utf-8", errors="surrogateescape")
    return path


def test_a_good_file_still_reads(tmp_path):
    path = tmp_path / "good.json"
    path.write_text(json.dumps(GOOD))
    refs = load_reference_baselines(path, default_hardware="H100")
    assert [(r.workload, r.metric, r.value, r.hardware) for r in refs] == [
        ("test_x/b", "latency_mean", 27.6, "H100"),
        ("test_x/b", "latency_mean", 30.1, "H100"),
    ]


@pytest.mark.parametrize("name", BAD)
def test_a_bad_file_is_one_line_naming_file_and_path(tmp_path, name):
    path = _write(tmp_path, name)
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        import_test_cases([(path, "tests/dfx/perf/tests/x.json", "org/repo", "abc")], out)
    _, field, words = BAD[name]
    text = str(err.value)
    assert "\n" not in text and err.value.file == str(path), text
    assert field in (err.value.field or ""), text
    assert words in text, text
    assert not out.exists() or not list(out.iterdir())
