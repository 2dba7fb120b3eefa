"""The GitHub Actions workflows, checked offline: GitHub's workflow schema (check-jsonschema), zizmor's
security audit, and the project's own rules (pinned actions, least privilege, no injection, no forks on
self-hosted runners)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
CALLERS = {"perf-presubmit.yml", "perf-nightly.yml", "perf-extended.yml"}
LANE = "perf-lane.yml"
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1).
    if True in data:
        data["on"] = data.pop(True)
    return data


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        pytest.skip(f"{name} is not installed (pip install {name}; it is a dev extra)")
    return found


def test_the_expected_workflows_exist():
    assert {f.name for f in FILES} >= CALLERS | {LANE}


def test_schema_valid():
    exe = tool("check-jsonschema")
    proc = subprocess.run(
        [exe, "--builtin-schema", "vendor.github-workflows", *map(str, FILES)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_offline_finds_nothing_high():
    exe = tool("zizmor")
    proc = subprocess.run(
        [exe, "--offline", "--format", "json", str(WORKFLOWS)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode in (0, 10, 11, 12, 13, 14), proc.stderr  # 1x: findings of some severity
    findings = json.loads(proc.stdout or "[]")
    high = [f["ident"] for f in findings if f["determinations"]["severity"] == "High"]
    assert not high, high
    # The regular persona is clean apart from the documented inline ignores.
    assert not findings, [(f["ident"], f["determinations"]["severity"]) for f in findings]


def _remote_uses(data: dict):
    for job in data["jobs"].values():
        for step in job.get("steps", []):
            if "uses" in step:
                yield step


def test_actions_pinned_to_commits_with_version_comment():
    for path in FILES:
        data = load(path.name)
        text = path.read_text()
        for step in _remote_uses(data):
            uses = step["uses"]
            assert SHA_PIN.match(uses), f"{path.name}: {uses} is not pinned to a commit SHA"
            line = next(line for line in text.splitlines() if uses in line)
            assert re.search(r"# v\d+\.\d+\.\d+", line), f"{path.name}: {uses} has no version comment"


def test_checkout_never_persists_credentials():
    steps = [s for p in FILES for s in _remote_uses(load(p.name)) if s["uses"].startswith("actions/checkout@")]
    assert steps
    assert all(s.get("with", {}).get("persist-credentials") is False for s in steps)


def test_no_expressions_inside_run_scripts():
    # Everything a script needs comes through env:, so no PR-controlled text becomes shell code.
    for path in FILES:
        for job in load(path.name)["jobs"].values():
            for step in job.get("steps", []):
                assert "${{" not in step.get("run", ""), f"{path.name}: {step.get('name')}"


def test_least_privilege():
    for name in CALLERS:
        data = load(name)
        assert data["permissions"] == {}, name
        for job_name, job in data["jobs"].items():
            perms = job["permissions"]
            assert set(perms) <= {"contents", "statuses", "pull-requests"}, (name, job_name)
            assert perms["contents"] == "read"
            assert perms["statuses"] == "write"
            if name == "perf-nightly.yml":
                assert "pull-requests" not in perms  # no PR to comment on
    lane = load(LANE)
    # The called workflow takes exactly the caller's grant: no block of its own that could widen it.
    assert "permissions" not in lane and "permissions" not in lane["jobs"]["lane"]


def test_pull_request_workflows_never_run_fork_code_on_self_hosted_runners():
    for name in ("perf-presubmit.yml", "perf-extended.yml"):
        data = load(name)
        assert set(data["on"]) == {"pull_request"}, "pull_request_target would hand secrets to fork code"
        for job in data["jobs"].values():
            assert "github.event.pull_request.head.repo.full_name == github.repository" in job["if"]


def test_lanes_devices_and_triggers():
    jobs = {}
    for name in CALLERS:
        for job_name, job in load(name)["jobs"].items():
            assert job["uses"] == f"./.github/workflows/{LANE}"
            w = job["with"]
            jobs[(name, job_name)] = w
            assert w["runner-labels"] == (
                "${{ vars.GUARDRAIL_NPU_RUNNER_LABELS }}"
                if w["device"] == "npu"
                else "${{ vars.GUARDRAIL_CUDA_RUNNER_LABELS }}"
            )
            assert set(job["secrets"]) == {"GUARDRAIL_TOKEN", "GUARDRAIL_DB_URL"}
            if w["device"] == "cuda":
                assert "vars.GUARDRAIL_CUDA_RUNNER_LABELS != ''" in job["if"]
    lanes = {(w["lane"], w["device"]) for w in jobs.values()}
    assert lanes == {(lane, dev) for lane in ("presubmit", "extended", "nightly") for dev in ("npu", "cuda")}
    keys = [w["key"] for w in jobs.values()]
    assert len(keys) == len(set(keys)), "each lane/device needs its own comment and status context"
    assert jobs[("perf-presubmit.yml", "npu")]["key"] == "presubmit"  # status context perf-guardrail/presubmit

    nightly = load("perf-nightly.yml")
    assert nightly["on"]["schedule"] and "workflow_dispatch" in nightly["on"]
    assert all("refs/heads/main" in job["if"] for job in nightly["jobs"].values())
    extended = load("perf-extended.yml")
    assert "labeled" in extended["on"]["pull_request"]["types"]
    assert all("perf:extended" in job["if"] for job in extended["jobs"].values())


def test_lane_steps_run_the_guardrail_flow():
    job = load(LANE)["jobs"]["lane"]
    assert job["runs-on"] == "${{ fromJSON(inputs.runner-labels) }}"
    script = "\n".join(s.get("run", "") for s in job["steps"])
    for needle in (
        'guardrail run --lane "$LANE" --device "$DEVICE" --scale "$SCALE" --out results/',
        'guardrail ingest --server "$GUARDRAIL_URL" results/',
        'guardrail check --commit "$HEAD_SHA" --lane "$LANE" --format json > verdicts.json',
        'guardrail comment "${args[@]}" --verdicts verdicts.json',
        "--pending",
        'guardrail changepoints --lane "$LANE"',
    ):
        assert needle in script, needle
    uses = [s["uses"].split("@")[0] for s in _remote_uses(load(LANE))]
    assert uses == ["actions/checkout", "actions/upload-artifact"]
    # Secrets reach only the steps that need them.
    by_name = {s["name"]: s for s in job["steps"]}
    assert by_name["Ingest into the guardrail service"]["env"] == {"GUARDRAIL_TOKEN": "${{ secrets.GUARDRAIL_TOKEN }}"}
    assert by_name["Check against the baseline"]["env"] == {"GUARDRAIL_DB": "${{ secrets.GUARDRAIL_DB_URL }}"}
    assert "inputs.lane == 'nightly'" in by_name["Change points and alerts (nightly)"]["if"]
    assert not any("secrets." in json.dumps(s.get("env", {})) for s in job["steps"] if s["name"].startswith("Run"))
    assert "secrets." not in json.dumps(job.get("env", {}))


def test_every_variable_and_secret_is_documented():
    doc = (ROOT / "docs" / "ci.md").read_text()
    names = set()
    for path in FILES:
        names |= set(re.findall(r"\b(?:vars|secrets)\.([A-Z][A-Z0-9_]+)", path.read_text()))
    assert names >= {"GUARDRAIL_NPU_RUNNER_LABELS", "GUARDRAIL_URL", "GUARDRAIL_TOKEN", "GUARDRAIL_DB_URL"}
    missing = [n for n in sorted(names) if f"`{n}`" not in doc]
    assert not missing, missing
