"""A parallel workload that cannot run is refused before anything launches: one line naming the file and the field,
exit 2, nothing written. Unsupported strategies (no library implements them for the family) say so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from guardrail.errors import InputError
from runners.launch import efficiency
from runners.parallel import SUPPORT, Parallel, unsupported_reason

GUARDRAIL = str(Path(sys.executable).parent / "guardrail")
WORKLOADS = Path(__file__).resolve().parent.parent / "workloads"
WAN, QWEN, HUNYUAN = "wan22-ti2v-5b-720p", "qwen-image-edit-2511-1024", "hunyuanimage-2.1-2048"


def _write(wdir: Path, source: str, name: str, parallel: dict, edit=None) -> Path:
    data = yaml.safe_load((WORKLOADS / f"{source}.yaml").read_text())
    data["name"] = name
    data["lanes"] = ["presubmit"]
    data["parallel"] = parallel
    if edit:
        edit(data)
    f = wdir / f"{name}.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    return f


def _tiny_seq_one(d: dict) -> None:  # 32x32x1 at Wan2.2-5B's 16x spatial VAE and 2x2 patch: one image token
    d["tiny"]["generation"].update(height=32, width=32, num_frames=1)


def _three_heads(data: dict) -> None:
    data["tiny"]["components"]["transformer"]["config"]["num_attention_heads"] = 3  # odd: ulysses=2 cannot split it


def _compiled(data: dict) -> None:
    data.setdefault("options", {})["compile"] = "inductor"


CASES = [
    (WAN, {"cfg": 2}, None, "parallel.cfg", "unsupported: neither diffusers 0.42.1 nor cache-dit 1.5 implements CFG"),
    (QWEN, {"cfg": 2}, None, "parallel.cfg", "unsupported"),
    (WAN, {"ulysses": 4, "vae_patch": 2}, None, "parallel.vae_patch", "vae_patch 2 must equal the world size 4"),
    (HUNYUAN, {"vae_patch": 2}, None, "parallel.vae_patch", "AutoencoderKLHunyuanImage"),
    (QWEN, {"ulysses": 4, "vae_patch": 4}, None, "parallel.vae_patch", "ranks 2 and above get an unfilled tensor"),
    (HUNYUAN, {"ulysses": 2, "hsdp": True}, None, "parallel.hsdp", "unsupported: torch FSDP2 with cache-dit's"),
    (WAN, {"tp": 2, "hsdp": True}, None, "parallel.hsdp", "is not combined"),
    (WAN, {"ulysses": 2, "hsdp": True}, _compiled, "parallel.hsdp", "unsupported: regional compile (diffusers"),
    (WAN, {"ulysses": 4096}, None, "parallel", "world size 4096 (the product of ulysses"),
    (QWEN, {"ulysses": 2}, _three_heads, "parallel.ulysses", "must divide the transformer's num_attention_heads (3)"),
    (WAN, {"ring": 2}, None, "parallel.ring", "none runs on cpu"),
    (WAN, {"tp": 2}, None, "parallel.tp", "tensor-parallel RMSNorm for Wan asserts that its input is not on cpu"),
    (HUNYUAN, {"ring": 2}, None, "parallel.ring", "takes no attn_mask, and HunyuanImage passes one"),
    (QWEN, {"tp": 2}, None, "parallel.tp", "unsupported: cache-dit 1.5.3's QwenImage planner divides attn.heads"),
    (WAN, {"ulysses": 4096}, None, "parallel", "(on cpu, --oversubscribe lets ranks share cores"),
    (WAN, {"ulysses": 2}, _tiny_seq_one, "parallel", "must divide the image sequence length (1 tokens at 32x32x1)"),
    (WAN, {"ulysses": 0}, None, "parallel.ulysses", "greater than or equal to 1"),
    (WAN, {"ulysses": 2, "pipeline": 2}, None, "parallel.pipeline", "unknown key"),
]


@pytest.mark.parametrize(("source", "parallel", "edit", "field", "message"), CASES)
def test_refused_before_launch(tmp_path, source, parallel, edit, field, message):
    from runners import run_lane

    wdir = tmp_path / "w"
    wdir.mkdir()
    f = _write(wdir, source, "bad", parallel, edit)
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        run_lane("presubmit", device="cpu", scale="tiny", out_dir=out, progress=False, workloads_dir=wdir)
    assert err.value.file == str(f)
    assert err.value.field == field
    assert message in str(err.value)
    assert not out.exists()  # refused before anything ran or was written


def test_cli_exit_2_one_line(tmp_path):
    wdir = tmp_path / "w"
    wdir.mkdir()
    f = _write(wdir, WAN, "wan-cfg2", {"ulysses": 2, "cfg": 2})
    out = tmp_path / "out"
    p = subprocess.run(
        [GUARDRAIL, "run", "--lane", "presubmit", "--device", "cpu", "--out", str(out), "--workloads-dir", str(wdir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {f}: parallel.cfg: unsupported: ")
    assert not any(out.rglob("*.json"))


def test_support_table_names_a_library_or_a_reason_for_every_strategy():
    for family, table in SUPPORT.items():
        assert set(table) == {"ulysses", "ring", "cfg", "tp", "vae_patch", "hsdp"}, family
        for strategy, s in table.items():
            assert (s.library is None) != (s.unsupported is None), (family, strategy)
    assert unsupported_reason("WanPipeline", Parallel(ulysses=2)) is None
    assert unsupported_reason("QwenImageEditPlusPipeline", Parallel(ulysses=2, cfg=2)).startswith("cfg:")


def test_world_is_the_product_of_the_degrees():
    assert Parallel().world == 1
    assert Parallel(ulysses=2, ring=2, tp=2).world == 8
    assert Parallel(ulysses=2, hsdp=True).world == 2


def test_single_device_digest_unchanged_by_the_new_field():
    from runners.spec import effective_spec
    from runners.workloads import load_workload

    spec = load_workload(WORKLOADS / f"{WAN}.yaml")
    assert "parallel" not in effective_spec(spec, "tiny")  # absent: the series of every existing workload stays


def test_efficiency_is_single_over_world_times_parallel():
    assert efficiency(100.0, 2, 50.0) == 1.0
    assert efficiency(100.0, 2, 80.0) == pytest.approx(0.625)
    assert efficiency(None, 2, 80.0) is None


def _check_cuda(par: Parallel, pipeline: str = "WanPipeline", **kw) -> None:
    from runners.parallel import check

    gen = type("G", (), {"height": 704, "width": 1280, "num_frames": 121})()
    tcfg = {"num_attention_heads": 24, "patch_size": [1, 2, 2]}
    vcfg = {"scale_factor_spatial": 16, "scale_factor_temporal": 4}
    check(par, pipeline=pipeline, transformer_config=tcfg, vae_config=vcfg, generation=gen, device_type="cuda",
          devices=8, **kw)  # fmt: skip


def test_rules_of_accelerator_runs():
    from runners.parallel import ParallelInputError

    _check_cuda(Parallel(ulysses=2))  # diffusers' Ulysses with the default backend
    _check_cuda(Parallel(ring=2), attention_backend="_native_cudnn")  # a backend that returns the log-sum-exp
    with pytest.raises(ParallelInputError, match="needs options.attention_backend in flash") as err:
        _check_cuda(Parallel(ring=2))
    assert err.value.field == "parallel.ring"
    _check_cuda(Parallel(tp=2))  # cache-dit's Wan planner
    _check_cuda(Parallel(tp=2), cache="cache_dit")  # cache-dit's cache and parallelism in one enable_cache call
    with pytest.raises(ParallelInputError, match="unsupported: cache-dit 1.5.3's QwenImage planner") as err:
        _check_cuda(Parallel(tp=2), pipeline="QwenImageEditPlusPipeline")  # on every device
    assert err.value.field == "parallel.tp" and err.value.unsupported
    with pytest.raises(ParallelInputError, match=r"num_attention_heads \(24\)"):
        _check_cuda(Parallel(tp=5))
    with pytest.raises(ParallelInputError, match="exceeds the 8 device"):
        _check_cuda(Parallel(ulysses=4, ring=4))


def test_cache_dit_ulysses_over_tp_needs_heads_it_can_pad():
    # cache-dit's Ulysses splits the heads each tp rank holds and pads them only while the padding is below the padded
    # count: the tiny HunyuanImage's 4 heads under tp4 leave 1 per rank, which ulysses2 cannot split (measured: its
    # AssertionError inside the job); the full-size 28 heads leave 7, padded to 8 (4 per rank)
    from runners.parallel import ParallelInputError, check

    def hunyuan(heads: int) -> None:
        gen = type("G", (), {"height": 2048, "width": 2048, "num_frames": None})()
        check(Parallel(ulysses=2, tp=4), pipeline="HunyuanImagePipeline", transformer_config={
            "num_attention_heads": heads}, vae_config={}, generation=gen, device_type="cuda", devices=8)  # fmt: skip

    hunyuan(28)
    with pytest.raises(ParallelInputError, match=r"splits the 1 head\(s\) each tp=4 rank holds") as err:
        hunyuan(4)
    assert err.value.field == "parallel.ulysses"
