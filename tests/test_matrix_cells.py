"""A parallel-matrix cell runs by its name: `guardrail run --workload BASE@TAG` builds the base workload with the cell's
`parallel:` mapping (and, for a cache cell, the matrix's cache options), as its own series; an unsupported or unknown
cell is refused before anything runs (exit 2, one line)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from guardrail.errors import InputError
from guardrail.matrix import Cell, parallel_mapping
from runners.spec import effective_spec
from runners.workloads import load_all, load_workload, select

GUARDRAIL = str(Path(sys.executable).parent / "guardrail")
WAN, QWEN, I2V = "wan22-ti2v-5b-720p", "qwen-image-edit-2511-1024", "wan22-i2v-a14b-480p"


def _one(name: str):
    ((path, spec),) = select("nightly", [name])
    return path, spec


def test_a_cell_is_the_base_workload_with_the_cells_mapping_and_its_own_series():
    path, spec = _one(f"{WAN}@ulysses2+vae_patch2")
    base = load_all()[WAN][1]
    assert spec.name == f"{WAN}@ulysses2+vae_patch2" and path.name == f"{spec.name}.yaml"
    par = spec.parallel
    assert par is not None and (par.ulysses, par.vae_patch, par.world) == (2, 2, 2)
    assert load_workload(path) == spec  # every rank reads the same spec back from the file
    a, b = effective_spec(base, "tiny"), effective_spec(spec, "tiny")
    assert {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)} == {"name", "parallel"}  # nothing else changed


def test_the_tag_may_name_the_strategies_in_any_order_and_is_stored_in_the_matrixs():
    _, spec = _one(f"{I2V}@hsdp+vae_patch2+ulysses2")
    assert spec.name == f"{I2V}@ulysses2+vae_patch2+hsdp"
    assert spec.parallel is not None and spec.parallel.hsdp


def test_a_cache_cell_takes_the_pinned_cache_workloads_options_at_both_scales():
    _, spec = _one(f"{QWEN}@ulysses2+cache_dit")
    pinned = load_all()[f"{QWEN}-cache-dit"][1]
    assert spec.options.cache == "cache_dit" and spec.options.cache_config == pinned.options.cache_config
    assert pinned.tiny.options is not None
    assert spec.options_at("tiny").cache_config == pinned.tiny.options.cache_config
    assert spec.generation_at("tiny") == load_all()[QWEN][1].generation_at("tiny")  # only the options come from it
    _, wan = _one(f"{WAN}@cache_dit")  # no cache workload named: the base's options with the cache on
    assert wan.options.cache == "cache_dit" and wan.parallel is None


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (f"{WAN}@cfg2", "is unsupported: cfg: neither diffusers 0.42.1 nor cache-dit 1.5 implements CFG-parallel"),
        (f"{WAN}@hsdp", f"no cell 'hsdp' in the wan2.2 matrix (wan22.yaml; e.g. {WAN}@"),
        ("no-such-base@ulysses2", "no parallel matrix has the base workload 'no-such-base'"),
    ],
)
def test_an_unsupported_or_unknown_cell_is_refused_naming_the_option(name, message):
    with pytest.raises(InputError) as err:
        select("nightly", [name])
    assert err.value.field == "--workload" and message in str(err.value)


def test_the_mapping_of_a_cell():
    assert parallel_mapping(Cell.of({"ulysses": 2, "vae_patch": 2, "hsdp": True})) == {
        "ulysses": 2,
        "vae_patch": 2,
        "hsdp": True,
    }
    assert parallel_mapping(Cell.of({})) == {}


def test_cli_refuses_an_unsupported_cell_in_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    p = subprocess.run(
        [GUARDRAIL, "run", "--lane", "nightly", "--device", "cpu", "--out", str(out), "--workload", f"{QWEN}@cfg2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --workload: cell ") and "unsupported: cfg:" in lines[0]
    assert not out.exists() or not any(out.rglob("*.json"))


def test_a_cache_schedule_the_tiny_blocks_cannot_fit_is_refused_before_launch(tmp_path):
    import yaml

    from runners import run_lane

    # HunyuanImage's tiny transformer cut to one block per list: cache-dit needs Fn_compute_blocks (1) < that
    data = yaml.safe_load((Path(__file__).parent.parent / "workloads" / "hunyuanimage-2.1-2048.yaml").read_text())
    data.update(name="hy-one-block", lanes=["nightly"], options={"cache": "cache_dit"})
    data["tiny"]["components"]["transformer"]["config"].update(num_layers=1, num_single_layers=1)
    data["tiny"]["options"] = {"cache": "cache_dit", "cache_config": {"Fn_compute_blocks": 1}}
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "hy-one-block.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        run_lane("nightly", device="cpu", scale="tiny", out_dir=out, workloads_dir=tmp_path / "w")
    assert err.value.field == "tiny.options.cache_config.Fn_compute_blocks" and "< the transformer's blocks (1)" in str(
        err.value
    )
    assert not out.exists()


def test_check_cache_reads_fn_against_every_block_list():
    from runners.options import check_cache
    from runners.spec import Options

    cached = Options(cache="cache_dit", cache_config={"Fn_compute_blocks": 2})
    check_cache("w.yaml", cached, {"num_layers": 4}, "tiny")  # fits
    check_cache("w.yaml", Options(), {"num_layers": 1}, "tiny")  # no cache: nothing to check
    with pytest.raises(InputError, match=r"Fn_compute_blocks \(2\) < the transformer's blocks \(2\)"):
        check_cache("w.yaml", cached, {"num_layers": 4, "num_single_layers": 2}, "full")
    with pytest.raises(InputError, match=r"\(8\)"):  # cache-dit's default Fn is 8
        check_cache("w.yaml", Options(cache="cache_dit"), {"num_layers": 4}, "tiny")


def test_vae_patch_or_hsdp_alone_leave_the_transformer_whole():
    from runners.parallel import Parallel
    from runners.parallel import plan as transformer_library

    assert transformer_library("WanPipeline", Parallel(vae_patch=2)) is None
    assert transformer_library("WanImageToVideoPipeline", Parallel(vae_patch=2, hsdp=True)) is None
    assert transformer_library("WanPipeline", Parallel(ulysses=2, vae_patch=2)) == "diffusers"
    assert transformer_library("HunyuanImagePipeline", Parallel(tp=2)) == "cache-dit"


def test_a_compile_cell_sets_the_compile_option_on_top_of_the_cells_other_options():
    _, spec = _one(f"{WAN}@ulysses2+compile_inductor")
    assert spec.options.compile == spec.options_at("tiny").compile == "inductor"
    assert spec.parallel is not None and spec.parallel.ulysses == 2
    _, both = _one(f"{WAN}@cache_dit+compile_inductor")
    assert (both.options_at("tiny").cache, both.options_at("tiny").compile) == ("cache_dit", "inductor")
    assert Cell.of({"ulysses": 2, "compile": "inductor"}).tag == "ulysses2+compile_inductor"
