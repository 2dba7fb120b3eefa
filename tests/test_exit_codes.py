"""Exit codes are a contract (issue 13 point 6): an uncaught exception exits 4 with one line, never 1."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# A command that fails the way a bug does (an uncaught exception), registered on the real app and run
# through the real entry point `guardrail.cli.main`.
BOOM = """
import sys
from guardrail.cli import app, main

@app.command("boom")
def boom() -> None:
    {}.get("x")["y"]  # TypeError: a bug

sys.argv = ["guardrail", *sys.argv[1:]]
main()
"""


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "GUARDRAIL_DEBUG"}
    return subprocess.run(
        [sys.executable, "-c", BOOM, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**full_env, **(env or {})},
    )


def test_internal_error_exits_4_with_one_line():
    proc = run("boom")
    assert proc.returncode == 4
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("internal error: TypeError: ")
    assert "rerun with --debug for the traceback; please report" in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_prints_the_traceback(how):
    proc = run("--debug", "boom") if how == "flag" else run("boom", env={"GUARDRAIL_DEBUG": "1"})
    assert proc.returncode == 4
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("internal error: TypeError: ")


def test_usage_and_bad_input_stay_2(tmp_path):
    assert run("no-such-command").returncode == 2
    bad = tmp_path / "v.json"
    bad.write_text("")
    proc = run("comment", "--repo", "o/r", "--sha", "a" * 40, "--verdicts", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and str(bad) in proc.stderr
