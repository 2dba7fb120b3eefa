"""`guardrail workloads import-vllm-omni`: real vLLM-Omni perf cases -> vllm-omni-serve workloads whose series are
the ones vLLM-Omni's own CI history (the corpus's diffusion_result_*.json) holds, and cold-start references."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardrail import vllm_omni_cases as cases
from guardrail.adapters import AdaptDefaults, adapt
from guardrail.ingest.reference import load_reference_yaml
from guardrail.ingest.reference_import import config_dims
from runners.workloads import load_workload
from tests.cli_inprocess import run_cli

DATA = Path(__file__).parent / "data" / "vllm_omni_cases"
CASE_FILES = sorted(DATA.glob("*.json"))
CORPUS = Path("/work/shared/corpus/vllm-omni-nightly/buildkite_nightly_raw")


def _import(capsys, out: Path, *files: Path, extra: tuple[str, ...] = ()) -> tuple[int, str, str]:
    return run_cli(capsys, "workloads", "import-vllm-omni", *map(str, files), "--out", str(out), *extra)


def test_every_benchmark_config_becomes_one_workload(tmp_path, capsys):
    code, out, err = _import(capsys, tmp_path / "w", *CASE_FILES, extra=("--commit", "ed919c97", "--lane", "nightly"))
    assert code == 0, err
    files = sorted((tmp_path / "w").glob("*.yaml"))
    configs = sum(len(c["benchmark_params"]) for f in CASE_FILES for c in json.loads(f.read_text()))
    assert len(files) == configs == 16
    assert "16 workload(s) from 3 case file(s)" in out
    spec = load_workload(tmp_path / "w" / "test_wan22_i2v_usp2_vae_patch2_hsdp_slicing.1280x720_frames121_steps4.yaml")
    assert spec.engine == "vllm-omni-serve" and spec.lanes == ["nightly"] and spec.family == "wan2.2"
    vo = spec.vllm_omni
    assert vo is not None
    assert vo.test_name == "test_wan22_i2v_usp2_vae_patch2_hsdp_slicing"
    assert vo.serve_args == {
        "usp": 2,
        "vae-patch-parallel-size": 2,
        "use-hsdp": True,
        "vae-use-slicing": True,
        "enable-diffusion-pipeline-profiler": True,
    }
    assert vo.hardware_marks == {"cuda": "H100", "npu": "A3"} and vo.num_cards == 2
    assert vo.marks == ["full_model", "diffusion"]
    assert "baseline" not in vo.benchmark_params and vo.baseline["latency_mean"] == 80.7784
    assert vo.source == {
        "repo": "vllm-project/vllm-omni",
        "path": "tests/dfx/perf/tests/test_wan22_i2v_vllm_omni.json",
        "commit": "ed919c97",
    }
    assert [s.name for s in vo.series] == ["test_wan22_i2v_usp2_vae_patch2_hsdp_slicing/1280x720_frames121_steps4"]
    # The dict form of `mark` (qwen-image-edit) reads the same as the list form.
    edit = load_workload(tmp_path / "w" / "test_qwen_image_edit_ulysses2_cfg2_cache_dit.512x512_steps20_i2i.yaml")
    assert edit.vllm_omni is not None and edit.vllm_omni.hardware_marks == {"cuda": "H100"}
    assert edit.vllm_omni.num_cards == 4 and edit.vllm_omni.marks == ["full_model", "diffusion"]


def test_per_hardware_baselines_become_cold_start_references(tmp_path, capsys):
    code, _, err = _import(capsys, tmp_path / "w", *CASE_FILES, extra=("--references", str(tmp_path / "ref")))
    assert code == 0, err
    rows = load_reference_yaml(tmp_path / "ref")
    row = next(
        r
        for r in rows
        if r.workload == "test_qwen_image_single_device/512x512_steps20" and r.metric == "throughput_qps"
    )
    assert (row.hardware, row.value, row.unit, row.direction) == ("H100", 0.4153, "req/s", "higher_is_better")
    # A sweep: one reference per step, told apart by max_concurrency, as its series are.
    sweep = [
        r
        for r in rows
        if r.test_name == "test_qwen_image_single_device_step_execution_high_concurrency" and r.metric == "latency_mean"
    ]
    assert sorted((r.dims["max_concurrency"], r.value) for r in sweep) == [
        ("1", 2.4215),
        ("2", 2.992),
        ("4", 6.6545),
        ("8", 9.656),
    ]
    # The flat block of a case pinned to H100 and A3 is H100's (the CI's numbers come from its H100 nightly).
    wan = [r for r in rows if r.test_name == "test_wan22_i2v_usp2_vae_patch2_hsdp_slicing"]
    assert wan and {r.hardware for r in wan} == {"H100"}


def test_a_sweep_is_one_workload_with_a_series_per_step():
    data = json.loads((DATA / "test_qwen_image_vllm_omni.json").read_text())
    docs = cases.convert(data, file="x.json", lanes=["nightly"])
    sweep = next(d for d in docs if d["name"].endswith("high_concurrency"))
    series = sweep["vllm_omni"]["series"]
    assert [s["step"] for s in series] == [0, 1, 2, 3]
    assert len({s["digest"] for s in series}) == 4 and len({s["name"] for s in series}) == 1
    steps = cases.steps(sweep["vllm_omni"]["benchmark_params"])
    assert [(s["max-concurrency"], s["num-prompts"]) for s in steps] == [(1, 20), (2, 40), (4, 80), (8, 160)]
    flags = cases.client_flags(steps[1])
    assert flags[flags.index("--max-concurrency") + 1] == "2" and "--enable-negative-prompt" in flags
    assert "--baseline" not in flags and "--name" not in flags


def test_report_columns_are_the_reference_importers_dims():
    """Two readers of one case must key a config the same way, or references would match no series."""
    for f in CASE_FILES:
        for case in json.loads(f.read_text()):
            sp = case["server_params"]
            for bp in case["benchmark_params"]:
                for step in cases.steps(bp):
                    ours = cases.series_of(case["test_name"], sp["model"], sp["serve_args"], step)["dims"]
                    theirs = config_dims(case["test_name"], sp["model"], sp["serve_args"], bp, step["max-concurrency"])
                    assert {k: v for k, v in ours.items() if k != "Attn_backend"} == theirs


@pytest.mark.parametrize(
    "case_file,result_glob",
    [
        ("test_wan22_i2v_vllm_omni.json", "diffusion_result_test_wan22_i2v_vllm_omni_*.json"),
        ("test_qwen_image_edit_vllm_omni.json", "diffusion_result_test_qwen_image_edit_vllm_omni_*.json"),
    ],
)
def test_imported_series_continue_the_corpus_history(tmp_path, capsys, case_file, result_glob):
    """The adapter, reading vLLM-Omni's own nightly files, names the same workload and digest as the import."""
    corpus = sorted(CORPUS.glob(f"*/{result_glob}")) if CORPUS.is_dir() else []
    if not corpus:
        pytest.skip("vLLM-Omni corpus not available")
    code, _, err = _import(capsys, tmp_path / "w", DATA / case_file)
    assert code == 0, err
    imported = {}
    for f in (tmp_path / "w").glob("*.yaml"):
        vo = load_workload(f).vllm_omni
        assert vo is not None
        imported.update({s.name: s.digest for s in vo.series})
    checked = 0
    for f in (corpus[0], corpus[-1]):  # the oldest build's layout (`backend`) and the newest's (`endpoint`)
        for r in adapt(f, "vllm-omni-diffusion", json.loads(f.read_text()), defaults=AdaptDefaults()):
            if r.workload.name not in imported:  # a config the case has dropped since that build
                continue
            assert imported[r.workload.name] == r.workload.digest, (f.name, r.workload.name)
            checked += 1
    assert checked >= 4


@pytest.mark.parametrize(
    "mutate,field",
    [
        (lambda d: d[0].pop("test_name"), "$[0].test_name"),
        (lambda d: d[0]["server_params"].pop("model"), "$[0].server_params.model"),
        (lambda d: d[0].__setitem__("benchmark_params", {"name": "x"}), "$[0].benchmark_params"),
        (
            lambda d: d[1]["benchmark_params"][0].__setitem__("max-concurrency", "one"),
            "$[1].benchmark_params[0].max-concurrency",
        ),
        (lambda d: d[1]["benchmark_params"][1].__setitem__("task", "t2a"), "$[1].benchmark_params[1].task"),
        (lambda d: d[0]["benchmark_params"][0].pop("name"), "$[0].benchmark_params[0].name"),
    ],
)
def test_bad_case_json_exits_2_naming_file_and_field(tmp_path, capsys, mutate, field):
    data = json.loads((DATA / "test_wan22_i2v_vllm_omni.json").read_text())
    mutate(data)
    bad = tmp_path / "bad_case.json"
    bad.write_text(json.dumps(data))
    code, _, err = _import(capsys, tmp_path / "w", DATA / "test_qwen_image_vllm_omni.json", bad)
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert str(bad) in line and field in line, line
    assert not (tmp_path / "w").exists()  # all checked before anything is written


def test_unparsable_case_file_exits_2(tmp_path, capsys):
    bad = tmp_path / "broken.json"
    bad.write_text('[{"test_name": ')
    code, _, err = _import(capsys, tmp_path / "w", bad)
    assert code == 2 and str(bad) in err


def test_benchmark_params_ref_is_resolved_next_to_the_case(tmp_path, capsys):
    data = json.loads((DATA / "test_wan22_i2v_vllm_omni.json").read_text())
    (tmp_path / "wan_params.json").write_text(json.dumps(data[1]["benchmark_params"]))
    data[1]["benchmark_params"] = {"$ref": "wan_params.json"}
    case = tmp_path / "test_wan_ref.json"
    case.write_text(json.dumps(data))
    code, out, err = _import(capsys, tmp_path / "w", case)
    assert code == 0, err
    assert "3 workload(s)" in out
    data[1]["benchmark_params"] = {"$ref": "missing.json"}
    case.write_text(json.dumps(data))
    code, _, err = _import(capsys, tmp_path / "w2", case)
    assert code == 2 and "$[1].benchmark_params.$ref" in err and "missing.json" in err
