"""The result schema: its JSON Schema document is generated from the models and kept in docs/."""

import json
import subprocess
import sys

from guardrail.schema import parse_result, result_json_schema
from tests.conftest import REPO
from tests.factories import result_doc


def test_documented_json_schema_is_current():
    assert json.loads((REPO / "docs" / "result-schema.json").read_text()) == result_json_schema(), (
        "docs/result-schema.json is stale: run `guardrail schema > docs/result-schema.json`"
    )


def test_json_schema_accepts_what_the_models_accept():
    import jsonschema

    doc = result_doc(metrics={"denoise_step_latency": [[1.0, 2.0], [3.0]]})
    jsonschema.validate(doc, result_json_schema())
    parse_result(doc)


def test_unknown_keys_are_refused_with_their_path():
    doc = result_doc()
    doc["metrics"][0]["repeat"] = [[1.0]]
    try:
        parse_result(doc, file="x.json")
    except Exception as exc:  # noqa: BLE001
        assert str(exc) == "x.json: $.metrics[0].repeat: unknown field"
    else:
        raise AssertionError("an unknown key was accepted")


def test_schema_command_prints_it():
    out = subprocess.run([sys.executable, "-m", "guardrail", "schema"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["title"] == "guardrail.result/v1"
