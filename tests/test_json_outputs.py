"""Every `--format json` output is valid JSON: a NaN or infinite number is written as null (issue 13, point 5)."""

from __future__ import annotations

import json

from guardrail.cli.app import echo_json


def test_non_finite_numbers_are_written_as_null_at_any_depth(capsys):
    echo_json({"cv": float("nan"), "rows": [{"p": float("inf"), "n": 3}, (1.5, float("-inf"))], "name": "x"})
    out = capsys.readouterr().out
    assert "NaN" not in out and "Infinity" not in out
    assert json.loads(out) == {"cv": None, "rows": [{"p": None, "n": 3}, [1.5, None]], "name": "x"}
