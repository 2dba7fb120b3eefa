"""JUnit reader: every variant against a real fixture file (tests/fixtures/junit/README.md says how
each was made), hostile XML, identity, signatures and verdict grouping."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from guardrail.analysis.junit_model import CaseIdentity, CaseRecord, failure_signature, mask_message
from guardrail.errors import InputError
from guardrail.ingest.junit_verdicts import group_verdicts
from guardrail.ingest.junit_xml import iter_junit

FIX = Path(__file__).parent / "fixtures" / "junit"


def _by_id(records: list[CaseRecord]) -> dict[str, list[CaseRecord]]:
    out: dict[str, list[CaseRecord]] = {}
    for r in records:
        out.setdefault(r.identity.id, []).append(r)
    for v in out.values():
        v.sort(key=lambda r: r.attempt)
    return out


def _verdicts(path: Path, **kw) -> dict[str, str]:
    return {v.identity.id: v.verdict for v in group_verdicts(iter_junit(path, **kw))}


@pytest.mark.parametrize("family", ["xunit1", "xunit2"])
def test_pytest_families_read_the_same(family: str) -> None:
    recs = _by_id(list(iter_junit(FIX / f"pytest_{family}.xml")))
    assert set(recs) == {
        "tests/test_io.py::test_a",
        "tests/test_io.py::test_resize[256]",
        "tests/test_io.py::test_resize[512]",
        "tests/test_io.py::test_flaky_then_pass",
        "tests/test_io.py::test_always_fails",
        "tests/test_io.py::test_setup_error",
        "tests/test_io.py::test_teardown_error",
        "tests/test_io.py::test_skipped",
        "tests/test_io.py::test_xfail",
        "tests/test_io.py::TestPipeline::test_step",
    }
    resize = recs["tests/test_io.py::test_resize[256]"][0].identity
    assert (resize.file, resize.classname, resize.name, resize.params) == (
        "tests/test_io.py",
        None,
        "test_resize",
        "256",
    )
    assert recs["tests/test_io.py::TestPipeline::test_step"][0].identity.classname == "TestPipeline"
    assert [r.outcome for r in recs["tests/test_io.py::test_always_fails"]] == ["fail"]
    setup = recs["tests/test_io.py::test_setup_error"][0]
    assert (setup.outcome, setup.phase) == ("error", "setup")
    assert "could not open /dev/davinci3" in setup.message
    teardown = recs["tests/test_io.py::test_teardown_error"][0]
    assert (teardown.outcome, teardown.phase) == ("error", "teardown")
    skipped = recs["tests/test_io.py::test_skipped"][0]
    assert (skipped.outcome, skipped.message, skipped.signature) == ("skip", "needs 2 NPUs", None)
    assert recs["tests/test_io.py::test_xfail"][0].outcome == "skip"
    assert all(len(v) == 1 and v[0].final for v in recs.values())


def test_xunit1_keeps_system_out_and_testcase_properties() -> None:
    recs = _by_id(list(iter_junit(FIX / "pytest_xunit1.xml")))
    a = recs["tests/test_io.py::test_a"][0]
    assert a.system_out is not None and "loading model from /data/models/wan22" in a.system_out
    assert ("hardware", "Ascend910B3") in a.properties
    # the hardware property makes it a variant of its own
    assert a.identity.hardware == "Ascend910B3" and a.identity.key == "tests/test_io.py::test_a@Ascend910B3"


def test_suite_property_sets_hardware_and_the_flag_is_the_default() -> None:
    # pytest_xunit2.xml carries <testsuite><properties><property name="hardware" value="Ascend910B3">
    recs = list(iter_junit(FIX / "pytest_xunit2.xml", hardware="cpu"))
    assert {r.identity.hardware for r in recs} == {"Ascend910B3"}
    # without a property the flag applies
    recs = list(iter_junit(FIX / "pytest_xunit1.xml", hardware="cpu"))
    assert {r.identity.hardware for r in recs} == {"cpu", "Ascend910B3"}  # test_a has its own property


def test_pytest_rerunfailures_failed_attempts_are_not_passes() -> None:
    """pytest-rerunfailures writes each failed attempt as a bare <testcase/>: reads as a pass."""
    path = FIX / "pytest_rerunfailures.xml"
    text = path.read_text()
    assert text.count('name="test_flaky_then_pass"') == 2  # the fixture holds what the plugin writes
    assert '<testcase classname="tests.test_io" name="test_always_fails" time="0.001" />' in text

    recs = _by_id(list(iter_junit(path)))
    flaky = recs["tests/test_io.py::test_flaky_then_pass"]
    assert [(r.inprocess_attempt, r.outcome, r.final) for r in flaky] == [
        (1, "fail", False),
        (2, "pass", True),
    ]
    assert flaky[0].source == "rerun-testcase"
    always = recs["tests/test_io.py::test_always_fails"]
    assert [r.outcome for r in always] == ["fail", "fail", "fail"]
    assert always[-1].final and always[-1].signature is not None

    verdicts = _verdicts(path)
    assert verdicts["tests/test_io.py::test_flaky_then_pass"] == "flaky"
    assert verdicts["tests/test_io.py::test_always_fails"] == "fail"
    assert verdicts["tests/test_io.py::test_setup_error"] == "fail"
    assert verdicts["tests/test_io.py::test_a"] == "pass"
    assert verdicts["tests/test_io.py::test_skipped"] == "skip"
    v = {x.identity.id: x for x in group_verdicts(iter_junit(path))}["tests/test_io.py::test_always_fails"]
    assert (v.attempts, v.failed_attempts, v.fails_every_attempt) == (3, 3, True)


def test_surefire_flaky_and_rerun_elements() -> None:
    recs = _by_id(list(iter_junit(FIX / "surefire_reruns.xml")))
    flaky = recs["com.example.serving.PipelineTest::testFlakyConnect"]
    assert [(r.outcome, r.source) for r in flaky] == [
        ("fail", "flakyFailure"),
        ("error", "flakyError"),
        ("pass", "testcase"),
    ]
    assert flaky[0].identity.file is None and flaky[0].identity.classname == "com.example.serving.PipelineTest"
    broken = recs["com.example.serving.PipelineTest::testBrokenAssert"]
    assert [(r.outcome, r.source) for r in broken] == [
        ("fail", "testcase"),
        ("fail", "rerunFailure"),
        ("fail", "rerunFailure"),
    ]
    assert broken[-1].final and not broken[0].final
    assert broken[0].message == "expected: <1024> but was: <1023>"
    # the three messages differ only in a number: one failure signature
    assert len({r.signature for r in broken}) == 1
    npe = recs["com.example.serving.PipelineTest::testBrokenNpe"]
    assert [r.outcome for r in npe] == ["error", "error"]
    verdicts = _verdicts(FIX / "surefire_reruns.xml")
    assert verdicts == {
        "com.example.serving.PipelineTest::testWarmup": "pass",
        "com.example.serving.PipelineTest::testFlakyConnect": "flaky",
        "com.example.serving.PipelineTest::testBrokenAssert": "fail",
        "com.example.serving.PipelineTest::testBrokenNpe": "fail",
        "com.example.serving.PipelineTest::testNeedsNpu": "skip",
    }


def test_pytorch_rerun_children() -> None:
    recs = _by_id(list(iter_junit(FIX / "pytorch_reruns.xml")))
    f16 = recs["test_attention.py::TestAttentionNPU::test_sdpa_npu_float16"]
    assert [(r.outcome, r.source, r.inprocess_attempt) for r in f16] == [
        ("fail", "rerun", 1),
        ("pass", "testcase", 2),
    ]
    assert "ACL stream synchronize failed" in f16[0].message
    assert f16[-1].system_out.startswith("[W compiler_depend.ts:133]")
    bf16 = recs["test_attention.py::TestAttentionNPU::test_sdpa_npu_bfloat16"]
    assert [r.outcome for r in bf16] == ["fail", "fail", "fail"]
    assert len({r.signature for r in bf16}) == 1  # "3 / 4096", "5 / 4096", "4 / 4096" mask alike
    # suite property "device" sets the hardware; a testcase property overrides it
    assert f16[0].identity.hardware == "Ascend910B3"
    assert recs["test_vae.py::TestVaeNPU::test_tiling_npu"][0].identity.hardware == "Ascend910B4"
    assert (
        _verdicts(FIX / "pytorch_reruns.xml")["test_attention.py::TestAttentionNPU::test_sdpa_npu_float16"] == "flaky"
    )


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("hostile_billion_laughs.xml", "DOCTYPE"),
        ("hostile_external_entity.xml", "DOCTYPE"),
        ("hostile_dtd.xml", "DOCTYPE"),
        ("malformed_truncated.xml", "line 3, column 24"),
        ("not_junit.xml", "root"),
    ],
)
def test_bad_xml_is_refused_naming_file_and_field(name: str, field: str) -> None:
    with pytest.raises(InputError) as exc:
        list(iter_junit(FIX / name))
    assert exc.value.file == str(FIX / name)
    assert exc.value.field == field
    assert "\n" not in str(exc.value)


def test_undeclared_entity_without_dtd_is_refused(tmp_path: Path) -> None:
    # With no DTD there is nothing to expand: expat refuses the reference instead of resolving it.
    p = tmp_path / "ent.xml"
    p.write_text(
        '<testsuite name="s"><testcase classname="x" name="t"><failure message="&xxe;"/></testcase></testsuite>'
    )
    with pytest.raises(InputError, match="undefined entity"):
        list(iter_junit(p))


def test_dtd_after_a_long_prolog_is_still_caught(tmp_path: Path) -> None:
    p = tmp_path / "late-dtd.xml"
    p.write_text(
        "<?xml version='1.0'?>\n"
        + "<!-- padding -->\n" * 20000
        + open(FIX / "hostile_dtd.xml").read().split("\n", 1)[1]
    )
    with pytest.raises(InputError) as exc:
        list(iter_junit(p))
    assert exc.value.field == "DOCTYPE"


def test_bad_duration_and_missing_name(tmp_path: Path) -> None:
    p = tmp_path / "bad.xml"
    p.write_text('<testsuite name="s"><testcase classname="x" name="t" time="fast"/></testsuite>')
    with pytest.raises(InputError) as exc:
        list(iter_junit(p))
    assert exc.value.field == "testcase[t].time"
    p.write_text('<testsuite name="s"><testcase classname="x"/></testsuite>')
    with pytest.raises(InputError, match="without a name"):
        list(iter_junit(p))
    with pytest.raises(InputError, match="file not found"):
        list(iter_junit(tmp_path / "missing.xml"))


def test_nested_suites_and_attempt_numbers(tmp_path: Path) -> None:
    p = tmp_path / "nested.xml"
    p.write_text(
        '<testsuites><testsuite name="outer">'
        '<properties><property name="hardware" value="H100"/></properties>'
        '<testsuite name="inner"><testcase classname="tests.test_x" name="t1" time="1.5"/></testsuite>'
        '<testcase classname="tests.test_x" name="t2" time="2"><failure message="boom"/></testcase>'
        "</testsuite></testsuites>"
    )
    recs = list(iter_junit(p, job_attempt=2, process_attempt=3))
    by = {r.identity.name: r for r in recs}
    assert by["t1"].identity.suite == "inner" and by["t1"].identity.hardware == "H100"
    assert by["t2"].identity.suite == "outer" and by["t2"].outcome == "fail"
    assert by["t1"].attempt == (2, 3, 1) and by["t1"].duration_s == 1.5
    assert by["t1"].identity.file == "tests/test_x.py"


def test_attempts_across_job_and_process_attempts_group_into_one_verdict() -> None:
    first = list(iter_junit(FIX / "pytest_xunit2.xml", job_attempt=1))
    rerun = list(iter_junit(FIX / "pytest_xunit1.xml", job_attempt=1, process_attempt=2, hardware="Ascend910B3"))
    verdicts = {v.identity.id: v for v in group_verdicts(first + rerun, head_commit="h", base_commit="b")}
    # failed in the first process, failed again in the fresh one: still fail, 2 attempts
    v = verdicts["tests/test_io.py::test_always_fails"]
    assert (v.verdict, v.attempts, v.head_commit, v.base_commit) == ("fail", 2, "h", "b")
    a1 = next(r for r in first if r.identity.name == "test_always_fails")
    assert v.rerun_duration_s == pytest.approx(v.duration_s - a1.duration_s)
    json.dumps(v.to_dict())  # serialisable as-is


def test_identity_ids() -> None:
    assert CaseIdentity("s", "tests/a.py", "TestX", "t", "1-2", "H100").key == "tests/a.py::TestX::t[1-2]@H100"
    assert CaseIdentity("s", None, "com.x.FooTest", "testBar").id == "com.x.FooTest::testBar"
    assert CaseIdentity("s", None, None, "lonely").id == "lonely"


def test_failure_signature_masks_what_varies() -> None:
    a = (
        "TimeoutError: worker 3 at 0x7f3a2c10 gave up after 30.5s in /tmp/pytest-of-ci/pytest-12/tmp0 "
        "(req 6f1c1b9e-0d0a-4a6e-9b7e-2b1f0f6b7a11, commit 81fb048c2d)"
    )
    b = (
        "TimeoutError: worker 7 at 0x55d1aa00 gave up after 12s in /tmp/pytest-of-ci/pytest-99/tmp3 "
        "(req 0b3ddd0f-7b67-4b43-8a52-3d8ca2ee2d20, commit 0216f48aa1)"
    )
    assert mask_message(a) == mask_message(b)
    assert failure_signature("TimeoutError", a) == failure_signature("TimeoutError", b)
    assert failure_signature("TimeoutError", a) != failure_signature("AssertionError", a)
    assert failure_signature(None, "expected dtype float16") != failure_signature(None, "expected dtype bfloat16")
    assert failure_signature(None, None) is None


def test_memory_stays_flat_on_a_larger_file(tmp_path: Path) -> None:
    """Peak RSS parsing 15,000 test cases is within a few MiB of parsing 1,500 (real subprocesses)."""
    bench = Path(__file__).parent.parent / "bench" / "bench_junit.py"
    code = (
        f"import sys, resource; sys.path.insert(0, {str(bench.parent)!r}); import bench_junit as b;"
        "from pathlib import Path;"
        "from guardrail.ingest.junit_xml import iter_junit;"
        "p = Path(sys.argv[2]); b.generate(p, int(sys.argv[1]));"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        "n = sum(1 for _ in iter_junit(p));"
        "print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)"
    )
    peaks = []
    for cases in (1_500, 15_000):
        out = subprocess.run(
            [sys.executable, "-c", code, str(cases), str(tmp_path / f"{cases}.xml")],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        assert int(out[0]) >= cases
        peaks.append(int(out[1]) / 1024)  # growth of peak RSS while parsing, MiB
    assert (tmp_path / "15000.xml").stat().st_size > 8 * (tmp_path / "1500.xml").stat().st_size
    assert peaks[1] < peaks[0] + 8, peaks
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0


def test_testcases_straight_under_testsuites(tmp_path: Path) -> None:
    p = tmp_path / "flat.xml"
    p.write_text(
        '<testsuites><testcase classname="tests.test_y" name="a"/><testcase name="b"><skipped/></testcase></testsuites>'
    )
    recs = {r.identity.name: r for r in iter_junit(p, hardware="cpu")}
    assert recs["a"].identity.suite == "" and recs["a"].identity.file == "tests/test_y.py"
    assert recs["b"].outcome == "skip" and recs["b"].identity.id == "b" and recs["b"].identity.hardware == "cpu"
