"""The example pipelines under .buildkite/, validated offline against Buildkite's own pipeline schema (a copy of
github.com/buildkite/pipeline-schema's schema.json, tests/data/buildkite/SOURCE.md), and checked for what the
schema cannot see: queues, lanes, keys, `$` escaping, and the conditional variables they use."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "tests/data/buildkite/pipeline-schema.json").read_text())
PIPELINES = {"perf-presubmit.yml": "presubmit", "perf-extended.yml": "extended", "perf-nightly.yml": "nightly"}
NPU_QUEUE = "a3_npu_4"
# The variables of Buildkite's step conditionals that these pipelines use, as github.com/buildkite/conditional
# (assignments.go, af63d27) defines them.
CONDITIONAL_VARIABLES = {
    "build.branch",
    "build.source",
    "build.pull_request.id",
    "build.pull_request.draft",
    "build.pull_request.labels",
    "build.pull_request.repository.fork",
}


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / ".buildkite" / name).read_text())


def steps(name: str) -> list[dict]:
    return load(name)["steps"]


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_pipeline_is_valid_against_buildkites_schema(name):
    jsonschema.Draft7Validator(SCHEMA).validate(load(name))


def test_the_schema_catches_a_misspelt_key():
    """The check above could fail: a typo in a step is refused by the committed schema."""
    bad = {"steps": [{"label": "x", "command": "true", "agent": {"queue": NPU_QUEUE}}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate(bad)


@pytest.mark.parametrize(("name", "lane"), sorted(PIPELINES.items()))
def test_each_pipeline_runs_its_lane_on_npu_and_cuda(name, lane):
    found = {s["env"]["DEVICE"]: s for s in steps(name)}
    assert set(found) == {"npu", "cuda"}
    assert found["npu"]["agents"]["queue"] == NPU_QUEUE
    assert found["cuda"]["agents"]["queue"] not in ("", NPU_QUEUE)
    keys = {s["env"]["KEY"] for s in found.values()}
    assert keys == {lane, f"{lane}-cuda"}, "one annotation context and one status per lane and device"
    for step in found.values():
        assert step["env"]["LANE"] == lane
        assert step["commands"][-1].endswith("scripts/buildkite-lane")
        assert {"GUARDRAIL_TOKEN", "GITHUB_TOKEN"} <= set(step["secrets"])
        assert step["timeout_in_minutes"] >= 60


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_runtime_variables_are_escaped_from_upload_interpolation(name):
    """`buildkite-agent pipeline upload` replaces $VAR with the uploader's value: a job's variables need $$."""
    for step in steps(name):
        for line in step["commands"]:
            assert not re.search(r"(?<!\$)\$(?!\$)", line.replace("$$", "")), line


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_conditionals_use_known_variables_and_spare_forks(name):
    for step in steps(name):
        used = set(re.findall(r"\bbuild(?:\.[a-z_]+)+", step["if"]))
        assert used and used <= CONDITIONAL_VARIABLES, used - CONDITIONAL_VARIABLES
        if PIPELINES[name] != "nightly":
            assert "build.pull_request.repository.fork == false" in step["if"]
        else:
            assert 'build.branch == "main"' in step["if"]


def test_the_scripts_the_pipelines_call_are_executable():
    for script in ("scripts/buildkite-lane", "scripts/buildkite-report"):
        path = ROOT / script
        assert path.is_file() and os.access(path, os.X_OK), script
