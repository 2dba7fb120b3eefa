"""`guardrail parity` and /api/v1/parity end to end: an H100 and an A3 lane's JUnit files (tests/data/junit/parity)
ingested into real SQLite and PostgreSQL stores, the known answer asserted exactly through the CLI and the JSON
API, the page drawn, and bad input (unknown hardware, a bad rules file) refused with exit 2 naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from guardrail.ingest.junit_writer import ingest_junit
from guardrail.schema import Source
from tests.cli_inprocess import run_cli
from tests.timeline import at, day

DATA = Path(__file__).parent / "data" / "junit" / "parity"
A, K, M = "tests/ops/test_attention.py", "tests/cuda/test_kernels.py", "tests/test_models.py"


@pytest.fixture
def store(db_url, capsys):
    """Yesterday through the writer (an older NPU run covering less); today through `guardrail ingest`."""
    ingest_junit(db_url, [DATA / "gpu-h100.xml"], source=Source(commit="c0"), lane="gpu-unit", hardware="H100",
                 started_at=at(days=-1))  # fmt: skip
    ingest_junit(db_url, [DATA / "npu-a3-older.xml"], source=Source(commit="c0"), lane="npu-unit", hardware="A3",
                 started_at=at(days=-1))  # fmt: skip
    for f, lane, hw in (("gpu-h100.xml", "gpu-unit", "H100"), ("npu-a3.xml", "npu-unit", "A3")):
        code, out, err = run_cli(
            capsys, "ingest", "--format", "junit", str(DATA / f), "--lane", lane, "--hardware", hw,
            "--commit", "c1", "--db", db_url,
        )  # fmt: skip
        assert code == 0, err
    return db_url


def check_known_answer(doc: dict) -> None:
    assert doc["schema"] == "guardrail.parity/v1"
    assert (doc["reference"], doc["target"]) == ("H100", "A3")
    # 21 GPU cases: 1 GPU-only by rule; of the other 20, 15 pass on the NPU, 1 fails, 2 are skipped, 2 never ran
    assert (doc["cases"], doc["ran"], doc["passed"]) == (20, 16, 15)
    assert (doc["run_share"], doc["pass_share"], doc["meets_goal"]) == (0.8, 0.75, False)
    assert [c["test"] for c in doc["missing"]] == [f"{K}::test_fused_moe", f"{M}::test_flux"]
    assert [(c["test"], c["target_test"]) for c in doc["skipped"]] == [
        (f"{K}::test_topk[fp16]", "tests/npu/test_kernels.py::test_topk[fp16]"),
        (f"{A}::test_attn[cuda-fp32]", f"{A}::test_attn[npu-fp32]"),
    ]
    assert [(c["test"], c["target_test"], c["verdict"]) for c in doc["failing"]] == [
        (f"{A}::test_rope_cache_cuda", f"{A}::test_rope_cache_npu", "fail")
    ]
    assert [(c["test"], c["reason"][:21]) for c in doc["excluded"]] == [
        (f"{A}::test_flash_attn_3[cuda-bf16]", "FlashAttention 3 is a")
    ]
    assert doc["target_only"] == ["tests/DEVICE/test_kernels.py::test_DEVICE_format_cast"]
    assert doc["suites"] == [
        {"suite": K, "cases": 6, "ran": 4, "passed": 4, "run_share": 0.6667, "pass_share": 0.6667,
         "missing": 1, "skipped": 1, "failing": 0, "excluded": 0},
        {"suite": A, "cases": 5, "ran": 4, "passed": 3, "run_share": 0.8, "pass_share": 0.6,
         "missing": 0, "skipped": 1, "failing": 1, "excluded": 1},
        {"suite": M, "cases": 9, "ran": 8, "passed": 8, "run_share": 0.8889, "pass_share": 0.8889,
         "missing": 1, "skipped": 0, "failing": 0, "excluded": 0},
    ]  # fmt: skip
    # yesterday's NPU run covered tests/test_models.py and one attention case: 9 of 20
    assert [(p["day"], p["ran"], p["passed"], p["pass_share"]) for p in doc["series"]] == [
        (day(days=-1), 9, 9, 0.45),
        (day(days=0), 16, 15, 0.75),
    ]
    assert [r["lane"] for r in doc["runs"]["reference"]] == ["gpu-unit"]
    # GPU: 21 cases x 6 s per run; NPU: 17 run x 12 s today (skips take 0 s), 9 x 12 s yesterday
    assert doc["ci_minutes"]["lanes"] == [
        {"role": "reference", "lane": "gpu-unit", "hardware": "H100", "runs": 2, "median_minutes": 2.1,
         "total_minutes": 4.2},
        {"role": "target", "lane": "npu-unit", "hardware": "A3", "runs": 2, "median_minutes": 2.6,
         "total_minutes": 5.2},
    ]  # fmt: skip
    assert (doc["ci_minutes"]["reference_latest"], doc["ci_minutes"]["target_latest"]) == (2.1, 3.4)
    assert doc["ci_minutes"]["target_vs_reference"] == 1.619


def test_cli_reports_the_known_answer(store, capsys):
    code, out, err = run_cli(capsys, "parity", "--reference", "H100", "--target", "A3", "--format", "json",
                             "--db", store)  # fmt: skip
    assert code == 0, err
    check_known_answer(json.loads(out))
    code, out, _ = run_cli(capsys, "parity", "--reference", "h100", "--target", "a3", "--db", store)
    assert code == 0
    assert out.splitlines()[0] == (
        "parity of A3 against H100: run share 80.0% (16/20), pass share 75.0% (15/20); goal 95%: not met"
    )
    assert f"  {A}::test_flash_attn_3[cuda-bf16]: FlashAttention 3" in out
    assert f"  {A}::test_rope_cache_cuda -> {A}::test_rope_cache_npu [fail]" in out


def test_min_share_gates_lanes_and_since_filter(store, capsys):
    args = ("parity", "--reference", "H100", "--target", "A3", "--db", store)
    assert run_cli(capsys, *args, "--min-share", "0.75")[0] == 0
    assert run_cli(capsys, *args, "--min-share", "0.76")[0] == 1
    code, out, _ = run_cli(capsys, *args, "--since", day(days=0), "--format", "json")
    doc = json.loads(out)
    assert code == 0 and [p["day"] for p in doc["series"]] == [day(days=0)] and doc["pass_share"] == 0.75
    code, out, _ = run_cli(capsys, *args, "--lane", "gpu-unit", "--format", "json")  # no target lane chosen
    doc = json.loads(out)
    assert code == 0 and doc["cases"] == 20 and doc["ran"] == 0 and doc["runs"]["target"] == []
    code, out, _ = run_cli(capsys, *args, "--lane", "gpu-unit", "--lane", "npu-unit", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and (doc["cases"], doc["ran"], doc["passed"]) == (20, 16, 15)
    assert doc["lanes"] == ["gpu-unit", "npu-unit"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--reference", "B200", "--target", "A3"), "--reference: no stored JUnit results on hardware 'B200'"),
        (("--reference", "H100", "--target", "H100"), "--target: the reference and the target are the same"),
        (("--reference", "H100", "--target", "A3", "--lane", "nope"), "--lane: no stored JUnit results in lane"),
        (("--reference", "H100", "--target", "A3", "--since", "yesterday"), "--since: expected a date"),
        (("--reference", "H100", "--target", "A3", "--min-share", "95"), "--min-share: expected a share"),
    ],
)
def test_bad_options_exit_2_naming_the_option(store, capsys, args, message):
    code, _, err = run_cli(capsys, "parity", *args, "--db", store)
    assert code == 2 and message in err


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (
            "normalise:\n  - pattern: '(cuda'\n    replace: X\n",
            "normalise[0].pattern",
            "not a valid regular expression",
        ),
        ("normalise:\n  - pattern: 'cuda'\n", "normalise[0].replace", "expected a string"),
        ("normalise:\n  - pattern: '(cuda)'\n    replace: '\\2'\n", "normalise[0].replace", "bad replacement"),
        ("gpu_only:\n  - pattern: fa3\n    reason: ''\n", "gpu_only[0].reason", "expected a reason"),
        ("gpu_only:\n  - {pattern: fa3, reason: x, why: y}\n", "gpu_only[0].why", "unknown key"),
        ("gpu_only: fa3\n", "gpu_only", "expected a list"),
        ("excluded: []\n", "excluded", "unknown key"),
        ("- a\n", "$", "expected a mapping"),
        ("normalise: [\n", None, "not valid YAML"),
    ],
)
def test_a_bad_rules_file_exits_2_naming_the_file_and_field(store, capsys, tmp_path, text, field, message):
    rules = tmp_path / "rules.yaml"
    rules.write_text(text)
    code, out, err = run_cli(
        capsys, "parity", "--reference", "H100", "--target", "A3", "--rules", str(rules), "--db", store
    )
    where = f"{rules}: {field}: " if field else f"{rules}: "
    assert code == 2 and out == "" and f"{where}{message}" in err, err


def test_api_and_page(store):
    from web.app import create_app

    with TestClient(create_app(store, cache_ttl=0)) as c:
        r = c.get("/api/v1/parity", params={"reference": "H100", "target": "A3", "days": 30})
        assert r.status_code == 200, r.text
        check_known_answer(r.json())
        assert c.get("/api/v1/parity", params={"reference": "B200", "target": "A3"}).status_code == 422
        assert c.get("/api/v1/parity", params={"reference": "H100"}).status_code == 422
        assert c.get("/api/v1/parity", params={"reference": "H1\x0000", "target": "A3"}).status_code == 422
        page = c.get("/parity")  # the default pair: the first CUDA part against the first Ascend part
        assert page.status_code == 200
        html = page.text
        assert "A3 against H100" in html and "75.0%" in html and "test_rope_cache_npu" in html
        assert html.count("<circle cx=") == 4  # two days x (run share, pass share)
        assert "pass share · A3 " + day(days=0) + ": 75%" in html
        assert '<a href="/parity">Parity</a>' in c.get("/").text
        assert c.get("/parity", params={"reference": "H100", "target": "B200"}).status_code == 422


def test_a_rerun_job_adds_to_its_commit_and_an_infrastructure_failure_is_left_out(store, capsys):
    """A rerun job (attempt 2 of the same commit) runs only the failed test: the lane's newest run is then that
    job, but its commit's verdicts still cover every test (the failed one now flaky, still failing). A newer
    run whose tests all failed on a lost device is an infrastructure failure: parity reads the previous one."""
    args = ("--format", "junit", "--lane", "npu-unit", "--hardware", "A3", "--db", store)
    rerun = ("ingest", str(DATA / "npu-a3-rerun.xml"), *args, "--commit", "c1", "--run-id", "77", "--attempt", "2")
    assert run_cli(capsys, *rerun)[0] == 0
    code, out, err = run_cli(capsys, "ingest", str(DATA / "npu-a3-infra.xml"), *args, "--commit", "c2")
    assert code == 0, err
    code, out, err = run_cli(capsys, "parity", "--reference", "H100", "--target", "A3", "--format", "json",
                             "--db", store)  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["cases"], doc["ran"], doc["passed"]) == (20, 16, 15)
    assert [(c["test"], c["verdict"]) for c in doc["failing"]] == [(f"{A}::test_rope_cache_cuda", "flaky")]
    (infra,) = doc["infra_failed_runs"]["target"]
    assert infra not in [r["run_id"] for r in doc["runs"]["target"]]
    npu = [ln for ln in doc["ci_minutes"]["lanes"] if ln["role"] == "target"]
    # today's commit: 17 x 12 s in the first attempt and 12 s in the rerun job
    assert doc["ci_minutes"]["target_latest"] == 3.6 and npu[0]["runs"] == 2
