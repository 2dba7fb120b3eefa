"""Workload files: the shipped ones are valid; bad ones are refused with one line naming file and field."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from guardrail.adapters.identity import digest
from guardrail.errors import InputError
from runners.spec import LANES, PIPELINES, effective_spec
from runners.workloads import default_workloads_dir, load_all, load_workload, select

WORKLOADS = default_workloads_dir()
BASE = "wan22-ti2v-5b-720p"


def _variant(tmp_path: Path, edit, name: str = BASE, source: str = BASE) -> Path:
    data = yaml.safe_load((WORKLOADS / f"{source}.yaml").read_text())
    edit(data)
    data["name"] = name
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def _refused(path: Path, field: str, words: str) -> InputError:
    with pytest.raises(InputError) as ei:
        load_workload(path)
    err = ei.value
    text = str(err)
    assert "\n" not in text
    assert err.file == str(path)
    assert err.field == field, text
    assert re.search(words, text), text
    return err


def test_every_shipped_workload_is_valid_and_cites_its_configs():
    specs = load_all()
    assert len(specs) >= 10
    for name, (path, spec) in specs.items():
        assert path.stem == name
        assert spec.pipeline in PIPELINES
        for comp in spec.components.values():
            if comp.kind in ("diffusers", "transformers"):
                assert comp.source and comp.source.startswith("https://")


def test_lanes_cover_all_three_families_in_presubmit():
    chosen = select("presubmit")
    families = {spec.family for _, spec in chosen}
    assert families == {"wan2.2", "hunyuanimage-2.1", "qwen-image-edit"}
    for lane in LANES:
        assert select(lane)
    pipes = {spec.pipeline for _, spec in select("release")}
    assert {
        "WanPipeline",
        "WanImageToVideoPipeline",
        "HunyuanImagePipeline",
        "QwenImageEditPipeline",
        "QwenImageEditPlusPipeline",
    } <= pipes


def test_pinned_geometry_matches_the_issue():
    specs = {n: s for n, (_, s) in load_all().items()}
    g = specs["wan22-ti2v-5b-720p"].generation
    assert (g.width, g.height, g.num_frames) == (1280, 704, 121)
    t2v = specs["wan22-t2v-a14b-720p"]
    assert t2v.components["boundary_ratio"].value == 0.875 and "transformer_2" in t2v.components
    assert (specs["wan22-i2v-a14b-480p"].generation.width, specs["wan22-i2v-a14b-480p"].generation.num_frames) == (
        832,
        81,
    )
    assert specs["wan22-i2v-a14b-720p"].generation.num_frames == 121
    assert specs["hunyuanimage-2.1-2048"].generation.height == 2048
    assert specs["qwen-image-edit-1024"].pipeline == "QwenImageEditPipeline"
    assert specs["qwen-image-edit-2511-1024"].pipeline == "QwenImageEditPlusPipeline"
    assert {s.generation.height for n, s in specs.items() if n.startswith("qwen")} == {512, 1024, 1536}


def test_digest_is_the_hash_of_the_canonical_spec(tmp_path):
    spec = load_workload(WORKLOADS / f"{BASE}.yaml")
    d_tiny = digest(effective_spec(spec, "tiny"))
    d_full = digest(effective_spec(spec, "full"))
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", d_full)
    assert d_tiny != d_full
    assert digest(effective_spec(load_workload(WORKLOADS / f"{BASE}.yaml"), "full")) == d_full  # stable
    # a change of what runs: new series
    steps = _variant(tmp_path, lambda d: d["generation"].update(num_inference_steps=49), name="steps49")
    assert digest(effective_spec(load_workload(steps), "full")) != d_full
    layers = _variant(
        tmp_path, lambda d: d["components"]["transformer"]["config"].update(num_layers=29), name="layers29"
    )
    assert digest(effective_spec(load_workload(layers), "full")) != d_full
    # lane membership and citations are not part of what runs
    lanes = _variant(tmp_path, lambda d: d.update(lanes=["nightly"], description="x"), name=BASE)
    assert digest(effective_spec(load_workload(lanes), "full")) == d_full
    # a tiny-only change leaves the full-scale series alone
    tiny = _variant(tmp_path, lambda d: d["tiny"]["generation"].update(num_inference_steps=5), name=BASE)
    assert digest(effective_spec(load_workload(tiny), "full")) == d_full
    assert digest(effective_spec(load_workload(tiny), "tiny")) != d_tiny


# --- bad input: each refused before anything runs --------------------------------------------------
def test_unknown_top_level_key(tmp_path):
    _refused(_variant(tmp_path, lambda d: d.update(stepz=3)), "stepz", "unknown key")


def test_unknown_nested_key(tmp_path):
    _refused(_variant(tmp_path, lambda d: d["generation"].update(hieght=704)), "generation.hieght", "unknown key")


def test_unknown_tiny_generation_key(tmp_path):
    _refused(
        _variant(tmp_path, lambda d: d["tiny"]["generation"].update(frames=5)), "tiny.generation.frames", "unknown key"
    )


def test_missing_pipeline_class(tmp_path):
    _refused(_variant(tmp_path, lambda d: d.pop("pipeline")), "pipeline", "required field is missing")


def test_unknown_pipeline_class(tmp_path):
    _refused(_variant(tmp_path, lambda d: d.update(pipeline="WanPipelin")), "pipeline", "unknown pipeline class")


def test_resolution_not_a_multiple_of_vae_and_patch(tmp_path):
    # Wan2.2 VAE (16x) x patch 2: 700 is not a multiple of 32
    _refused(_variant(tmp_path, lambda d: d["generation"].update(height=700)), "generation.height", "multiple of 32")


def test_frame_count_the_vae_cannot_take(tmp_path):
    _refused(
        _variant(tmp_path, lambda d: d["generation"].update(num_frames=120)), "generation.num_frames", "multiple of 4"
    )


def test_tiny_resolution_checked_against_the_tiny_config(tmp_path):
    _refused(
        _variant(tmp_path, lambda d: d["tiny"]["generation"].update(width=40)),
        "tiny.generation.width",
        "multiple of 32",
    )


def test_qwen_edit_resolution(tmp_path):
    p = _variant(tmp_path, lambda d: d["generation"].update(width=1000), name="q", source="qwen-image-edit-1024")
    _refused(p, "generation.width", "multiple of 16")


def test_unknown_lane_in_file(tmp_path):
    _refused(_variant(tmp_path, lambda d: d.update(lanes=["presubmit", "weekly"])), "lanes", "unknown lane 'weekly'")


def test_unknown_compile_option(tmp_path):
    _refused(_variant(tmp_path, lambda d: d.update(options={"compile": "tensorrt"})), "options.compile", "inductor")


def test_unknown_cache_option(tmp_path):
    _refused(_variant(tmp_path, lambda d: d.update(options={"cache": "teacache"})), "options.cache", "cache_dit")


def test_local_weights_path_that_does_not_exist(tmp_path, monkeypatch):
    monkeypatch.delenv("GUARDRAIL_MODEL_ROOT", raising=False)
    missing = tmp_path / "no-such-weights"
    p = _variant(tmp_path, lambda d: d["model"].update(path=str(missing)))
    _refused(p, "model.path", "does not exist")


def test_local_weights_path_relative_to_model_root(tmp_path, monkeypatch):
    (tmp_path / "root" / "wan").mkdir(parents=True)
    monkeypatch.setenv("GUARDRAIL_MODEL_ROOT", str(tmp_path / "root"))
    spec = load_workload(_variant(tmp_path, lambda d: d["model"].update(path="wan")))
    assert spec.model.path == "wan"


def test_unknown_metric(tmp_path):
    _refused(_variant(tmp_path, lambda d: d.update(metrics=["e2e_latency", "fps"])), "metrics", "unknown metric")


def test_full_config_without_a_source(tmp_path):
    _refused(_variant(tmp_path, lambda d: d["components"]["vae"].pop("source")), "components.vae.source", "cite")


def test_name_must_match_the_file(tmp_path):
    data = yaml.safe_load((WORKLOADS / f"{BASE}.yaml").read_text())
    p = tmp_path / "other.yaml"
    p.write_text(yaml.safe_dump(data))
    _refused(p, "name", "differs from the file name")


def test_unknown_lane_and_workload_in_selection():
    with pytest.raises(InputError, match="unknown lane 'weekly'"):
        select("weekly")
    with pytest.raises(InputError, match="unknown workload 'nope'"):
        select("presubmit", ["nope"])


def test_a_bad_file_in_the_directory_refuses_the_whole_lane(tmp_path):
    for f in WORKLOADS.glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    _variant(tmp_path, lambda d: d.update(pipeline=None), name="broken")
    with pytest.raises(InputError, match="broken.yaml"):
        select("presubmit", directory=tmp_path)


def test_import_needs_no_torch():
    code = (
        "import sys, guardrail, runners, runners.spec, runners.lane, guardrail.cli.run; "
        "bad = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
