"""The parallel-strategy matrix (issue 16, point 5): the pinned matrices load, the nightly plan covers every pair
of strategy values that a supported cell has (all-pairs, proven here cell by cell), unsupported cells carry the
library's reason, the vLLM-Omni combinations are named cells, and `guardrail matrix` prints the plans with their
device minutes and the last stored state of each cell."""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import combinations

import pytest

from guardrail.errors import InputError
from guardrail.ingest import ingest
from guardrail.matrix import AXES, Cell, cells, load_matrices, load_matrix, pairwise, plan
from tests.factories import result_doc, write

PINNED = load_matrices()


def _supported_pairs(m) -> set:
    axes = [a for a in AXES if a in m.axes and len(m.axes[a]) > 1]
    return set().union(*(p.cell.pairs(axes) for p in plan(m, "weekly") if p.supported)), axes


@pytest.mark.parametrize("path,m", PINNED, ids=[p.stem for p, _ in PINNED])
def test_nightly_covers_every_pair_of_values_that_a_supported_cell_has(path, m):
    want, axes = _supported_pairs(m)
    nightly = [p for p in plan(m, "nightly") if p.supported]
    got = set().union(*(p.cell.pairs(axes) for p in nightly))
    assert want and want <= got
    weekly = [p for p in plan(m, "weekly") if p.supported]
    assert len(nightly) <= len(weekly)
    if len(weekly) > 20:  # wan2.2-i2v's 14 cells need 7 for their pairs (ulysses 3 values x the others 2)
        assert len(nightly) < len(weekly) / 2  # the reduction is real where the product is large
    assert nightly[0].cell.single_device and weekly[0].cell.single_device  # the reference runs in every lane
    assert all(p.device_minutes == m.minutes_per_run * p.cell.world * m.lanes["nightly"].repeats for p in nightly)


def test_pairwise_on_three_axes_of_three_values_needs_far_fewer_than_the_product():
    values = [1, 2, 4]
    product = [Cell.of({"ulysses": a, "ring": b, "tp": c}) for a in values for b in values for c in values]
    chosen = pairwise(product, ["ulysses", "ring", "tp"])
    covered = set().union(*(c.pairs(["ulysses", "ring", "tp"]) for c in chosen))
    for x, y in combinations(["ulysses", "ring", "tp"], 2):
        for a in values:
            for b in values:
                assert (x, repr(a), y, repr(b)) in covered
    assert 9 <= len(chosen) <= 12 < len(product)
    assert pairwise(product, ["ulysses", "ring", "tp"]) == chosen  # deterministic


def test_the_vllm_omni_combinations_are_named_and_refused_where_no_library_implements_them():
    by_family = {m.family: m for _, m in PINNED}
    qwen = {p.cell.name: p for p in plan(by_family["qwen-image-edit"], "presubmit")}
    cfg = qwen["vllm-omni-ulysses2-cfg2-vae_patch4"]
    assert not cfg.supported and cfg.reason.startswith("cfg: ") and "CFG-parallel" in cfg.reason
    assert cfg.cell.world == 4  # ulysses 2 x cfg 2; the VAE's 4 patches on the same ranks
    hunyuan = {p.cell.name: p for p in plan(by_family["hunyuanimage"], "presubmit")}
    assert hunyuan["vllm-omni-tp4"].supported and hunyuan["vllm-omni-tp2-sp2"].supported
    assert "cache-dit" in hunyuan["vllm-omni-tp4"].reason
    i2v = {p.cell.name: p for p in plan(by_family["wan2.2-i2v"], "presubmit")}
    hsdp = i2v["vllm-omni-usp2-vae_patch2-hsdp"]
    # the vLLM-Omni I2V case runs: diffusers' Ulysses, cache-dit's VAE tiles over both ranks, torch FSDP2 weights
    assert hsdp.supported and hsdp.cell.world == 2, hsdp.reason
    assert "diffusers" in hsdp.reason and "parallelize_autoencoder" in hsdp.reason and "FSDP2" in hsdp.reason


def test_a_cell_whose_vae_patches_are_not_its_ranks_is_unsupported(tmp_path):
    # the VAE's tiles go to every rank of the job (cache-dit): ulysses4+vae_patch2 would decode on 4 ranks, not 2
    path = tmp_path / "m.yaml"
    path.write_text(
        "schema: guardrail.matrix/v1\nfamily: f\nworkload: w\nminutes_per_run: 1\n"
        "axes: {ulysses: [1, 4], vae_patch: [1, 2]}\n"
        "support: {ulysses: {library: diffusers, api: cp}, vae_patch: {library: cache-dit, api: vae}}\n"
        "lanes: {weekly: {cells: all}}\n"
    )
    m = load_matrix(path)
    refused = {p.cell.tag: p.reason for p in plan(m, "weekly") if not p.supported}
    assert list(refused) == ["ulysses4+vae_patch2"] and "is not the job's 4 ranks" in refused["ulysses4+vae_patch2"]
    assert len(cells(m)) == 4


def test_vae_patches_above_two_are_unsupported_for_cache_dits_relay():
    # bench/cache_dit_relay.py: in cache-dit 1.5.3 ranks 2.. of the tiled VAE's relay get an unfilled tensor
    m = {m.family: m for _, m in PINNED}["qwen-image-edit"]
    refused = {p.cell.tag: p.reason for p in plan(m, "weekly") if not p.supported}
    assert "relays the VAE's result to ranks 2 and up" in refused["ulysses4+vae_patch4"]
    assert "relays" in refused["vae_patch4"] and "vae_patch2" not in refused


def test_hsdp_with_compile_is_unsupported_and_hsdp_alone_is_not():
    # measured: FSDP2 renames the block classes that diffusers' regional compile looks for
    m = {m.family: m for _, m in PINNED}["wan2.2-i2v"]
    refused = {p.cell.tag: p.reason for p in plan(m, "weekly") if not p.supported}
    assert "FSDP2's renamed classes" in refused["ulysses2+hsdp+compile_inductor"]
    assert "ulysses2+hsdp" not in refused and "ulysses2+compile_inductor" not in refused


@pytest.mark.parametrize(
    "text,field",
    [
        ("axes: {warp: [1, 2]}", "$.axes"),
        ("axes: {ulysses: [1, 1.5]}", "$.axes"),
        ("axes: {ulysses: [1, 2]}\nsupport: {ulysses: {}}", "$.support.ulysses"),
        ("axes: {ulysses: [1, 2]}\nnamed: {x: {ulysses: 8}}", "$"),
    ],
)
def test_a_bad_matrix_file_is_bad_input_naming_the_file_and_field(tmp_path, text, field):
    path = tmp_path / "bad.yaml"
    path.write_text(
        f"schema: guardrail.matrix/v1\nfamily: f\nworkload: w\nminutes_per_run: 1\n{text}\n"
        "lanes: {nightly: {cells: pairwise}}\n"
    )
    with pytest.raises(InputError) as err:
        load_matrix(path)
    assert err.value.file == str(path) and err.value.field == field
    out = subprocess.run([sys.executable, "-m", "guardrail", "matrix", str(path)], capture_output=True, text=True)
    assert out.returncode == 2 and str(path) in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_cli_prints_the_plan_and_the_last_stored_state_of_a_cell(sqlite_url, tmp_path):
    doc = result_doc(
        workload="wan22-ti2v-5b-720p@ulysses2",
        metrics={
            "denoise_step_latency": [[600.0, 601.0], [602.0, 600.5]],
            "scaling_efficiency": [[0.83]],
            "output_psnr": [[41.5]],
            "output_ssim": [[0.995]],
        },
    )
    ingest(sqlite_url, [write(tmp_path / "r.json", doc)])
    base = [sys.executable, "-m", "guardrail", "matrix", "--lane", "presubmit", "--db", sqlite_url]
    out = subprocess.run([*base, "--format", "json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    fams = {f["family"]: f for f in json.loads(out.stdout)["families"]}
    cell = next(c for c in fams["wan2.2"]["cells"] if c["cell"] == "ulysses2")
    assert cell["workload"] == "wan22-ti2v-5b-720p@ulysses2" and cell["world"] == 2
    assert cell["last"]["efficiency"] == pytest.approx(0.83) and cell["last"]["ssim"] == pytest.approx(0.995)
    assert cell["last"]["verdict"] is None  # stored, not checked
    text = subprocess.run(base, capture_output=True, text=True)
    assert text.returncode == 0, text.stderr
    line = next(x for x in text.stdout.splitlines() if "efficiency" in x)
    assert "efficiency 83%" in line and "PSNR 41.5 dB" in line and "not checked" in line
    assert "unsupported ulysses2+cfg2+vae_patch4 [vllm-omni-ulysses2-cfg2-vae_patch4]: cfg:" in text.stdout
    # nightly: the rest grouped by reason, one line per reason with its count, not one per cell
    nightly = [sys.executable, "-m", "guardrail", "matrix", "--lane", "nightly"]
    fams = {f["family"]: f for f in json.loads(subprocess.run([*nightly, "--format", "json"], capture_output=True,
                                                              text=True, check=True).stdout)["families"]}  # fmt: skip
    ntext = subprocess.run(nightly, capture_output=True, text=True, check=True).stdout
    grouped = [x for x in ntext.splitlines() if x.startswith("  unsupported, ")]
    unnamed = [c for f in fams.values() for c in f["unsupported"] if not c["name"]]
    assert grouped and sum(int(x.split(" cell")[0].rsplit(" ", 1)[1]) for x in grouped) == len(unnamed)
    assert len(grouped) == len({(f["family"], c["reason"]) for f in fams.values() for c in f["unsupported"]
                                if not c["name"]})  # fmt: skip
    assert text.stdout.strip().splitlines()[-1].startswith("lane presubmit: at most ")


def test_the_matrix_page_shows_each_lane_with_the_last_state_of_its_cells(sqlite_url, tmp_path):
    from fastapi.testclient import TestClient

    from web.app import create_app

    doc = result_doc(workload="qwen-image-edit-2511-1024@ulysses2", metrics={"scaling_efficiency": [[0.91]]})
    ingest(sqlite_url, [write(tmp_path / "r.json", doc)])
    with TestClient(create_app(sqlite_url)) as client:
        page = client.get("/matrix?lane=presubmit")
        assert page.status_code == 200
        html = page.text
        assert "vllm-omni-ulysses2-cfg2-vae_patch4" in html and "CFG-parallel" in html  # refused, with the reason
        row = html[html.index("<code>ulysses2</code> <small>ulysses2</small>") :].split("</tr>")[0]
        assert "91%" in row and "not checked" in row
        assert client.get("/matrix?lane=sideways").status_code == 422


PIPELINES = {
    "wan2.2": "WanPipeline",
    "wan2.2-i2v": "WanImageToVideoPipeline",
    "qwen-image-edit": "QwenImageEditPlusPipeline",
    "hunyuanimage": "HunyuanImagePipeline",
}


@pytest.mark.parametrize("path,m", PINNED, ids=[p.stem for p, _ in PINNED])
def test_the_matrix_and_the_runner_agree_on_what_runs(path, m):
    """A cell the matrix plans is one the parallel runner accepts for the family (same world size), and a cell the
    matrix refuses for a strategy the runner refuses too: the page never promises what `guardrail run` refuses."""
    from runners.parallel import Parallel, unsupported_reason

    for p in plan(m, "weekly"):
        values = {k: v for k, v in p.cell.values if k not in ("cache", "compile")}
        par = Parallel(**values)
        assert par.world == p.cell.world
        runner = unsupported_reason(PIPELINES[m.family], par, p.cell.get("compile"))
        if p.supported:
            assert runner is None, (p.cell.tag, runner)
        elif "needs" not in p.reason and "divide" not in p.reason:
            assert runner is not None, p.cell.tag
