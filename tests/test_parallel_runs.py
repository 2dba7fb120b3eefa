"""2-rank gloo jobs of tiny Wan2.2 and Qwen-Image-Edit with ulysses=2 through diffusers' context parallelism
(torchrun, CPU): valid results with per-rank metrics, output equivalence against the single-device reference job,
and scaling efficiency."""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import pytest
import yaml

pytest.importorskip("diffusers")
pytest.importorskip("torch")

from guardrail.errors import InputError  # noqa: E402
from guardrail.schema import load_result  # noqa: E402

pytestmark = [pytest.mark.runners, pytest.mark.slow]
WORKLOADS = Path(__file__).resolve().parent.parent / "workloads"


def _write(wdir: Path, source: str, name: str, parallel: dict, edit=None) -> None:
    data = yaml.safe_load((WORKLOADS / f"{source}.yaml").read_text())
    data["name"] = name
    data["lanes"] = ["presubmit"]
    data["parallel"] = parallel
    if edit:
        edit(data)
    (wdir / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _qwen_two_heads(d: dict) -> None:
    # ulysses=2 needs heads divisible by 2 (the pinned tiny transformer has 3); Qwen-Image's _cp_plan also splits the
    # text sequence, so the negative prompt is one whose token count is even (' ' is odd: diffusers refuses it). The
    # base workload's tiny prompts already divide by 4; the cache workload (32x32, its own tiny generation) takes this.
    d["tiny"]["components"]["transformer"]["config"]["num_attention_heads"] = 2
    d["generation"]["negative_prompt"] = "blurry, low quality."


def _run(tmp_path: Path, name: str, **kw):
    from runners import run_lane

    files = run_lane(
        "presubmit",
        device="cpu",
        scale="tiny",
        repeats=1,
        out_dir=tmp_path / "out",
        progress=False,
        workloads_dir=tmp_path / "w",
        **kw,
    )
    assert len(files) == 1 and files[0].name.startswith(name)
    return load_result(files[0])


def _check(r, world: int = 2) -> None:
    assert r.status == "ok", r.error
    names = {m.name: m for m in r.metrics}
    for rank in range(world):
        assert f"denoise_step_latency_rank{rank}" in names and f"peak_memory_rank{rank}" in names
        assert names[f"peak_memory_rank{rank}"].repeats[0][0] > 0
    # a step takes as long as its slowest rank
    per_rank = [names[f"denoise_step_latency_rank{k}"].repeats[0] for k in range(world)]
    assert names["denoise_step_latency"].repeats[0] == [max(col) for col in zip(*per_rank, strict=True)]
    assert names["rank_step_spread"].repeats[0][0] >= 0
    # exposed communication per step, per rank (runners.collectives): there, and a part of each step only
    comm = [names[f"denoise_step_comm_time_rank{k}"].repeats[0] for k in range(world)]
    for k in range(world):
        assert len(comm[k]) == len(per_rank[k]) and all(0 < c < s for c, s in zip(comm[k], per_rank[k], strict=True))
    job_comm = names["denoise_step_comm_time"].repeats[0]
    assert job_comm == pytest.approx([statistics.fmean(col) for col in zip(*comm, strict=True)])
    # same seed, same weights: the picture does not change (fp32 on CPU: equal to rounding)
    assert names["parallel_psnr"].repeats[0][0] >= 30.0
    assert names["parallel_ssim"].repeats[0][0] >= 0.97
    assert names["parallel_max_abs_diff"].repeats[0][0] < 1e-3
    assert names["parallel_psnr"].direction == "higher_is_better"
    p = r.extra["parallel"]
    ref_step = statistics.median(p["reference"]["step_latency_ms"])
    job_step = statistics.median(names["denoise_step_latency"].repeats[0])
    assert names["scaling_efficiency"].repeats[0][0] == pytest.approx(ref_step / (world * job_step))
    applied = p["applied"]
    assert applied["library"] == "diffusers" and applied["backend"] == "gloo" and applied["world"] == world
    assert applied["ulysses"] == 2 and applied["library_version"]
    assert applied["cpu_accommodation"]  # recorded where it applied
    assert p["output_mismatch"] is False
    assert r.workload.spec["parallel"]["ulysses"] == 2  # a parallel run is its own series
    assert r.environment.device_type == "cpu"
    # node telemetry per rank of each job: on a CPU none, said so
    tel = r.extra["telemetry"]
    assert [x["label"] for x in tel["processes"]] == [f"job 1 rank {k}" for k in range(world)]
    assert tel["absent"] == "no device telemetry on cpu" and tel["anomalies"] == []


def test_wan22_ulysses2_gloo(tmp_path):
    (tmp_path / "w").mkdir()
    _write(tmp_path / "w", "wan22-ti2v-5b-720p", "wan-ulysses2", {"ulysses": 2})
    r = _run(tmp_path, "wan-ulysses2")
    _check(r)
    assert r.extra["parallel"]["applied"]["models"] == ["WanTransformer3DModel"]
    # the full outputs are not kept (gigabytes at full size), only the numbers
    assert not list((tmp_path / "out").rglob("*.npy"))


def test_wan22_ulysses2_with_hsdp_gloo(tmp_path):
    # the vLLM-Omni I2V case's weight sharding: torch FSDP2 over both ranks under diffusers' Ulysses, same picture
    (tmp_path / "w").mkdir()
    _write(tmp_path / "w", "wan22-ti2v-5b-720p", "wan-ulysses2-hsdp", {"ulysses": 2, "hsdp": True})
    r = _run(tmp_path, "wan-ulysses2-hsdp")
    _check(r)
    h = r.extra["parallel"]["applied"]["hsdp_applied"]
    assert h["library"] == "torch" and h["api"] == "torch.distributed.fsdp.fully_shard" and h["mesh"] == [2]
    assert h["units"] == 4 + 1  # the tiny transformer's 4 blocks, then the model
    assert 0.45 < h["local_weight_fraction"] < 0.55  # each rank holds half the weights


def test_wan22_ulysses2_vae_patch2_hsdp_gloo(tmp_path):
    # the vLLM-Omni I2V case's mapping on the tiny TI2V: Ulysses, the VAE's tiles over both ranks, sharded weights;
    # the reference decodes the same tiles on one device, so the picture must not change at all
    (tmp_path / "w").mkdir()
    _write(tmp_path / "w", "wan22-ti2v-5b-720p", "wan-u2-vp2-hsdp", {"ulysses": 2, "vae_patch": 2, "hsdp": True})
    r = _run(tmp_path, "wan-u2-vp2-hsdp")
    _check(r)
    applied = r.extra["parallel"]["applied"]
    v = applied["vae_patch_applied"]
    assert v["library"] == "cache-dit" and v["vae"] == "AutoencoderKLWan" and v["ranks"] == 2
    assert v["cpu_accommodation"] and applied["hsdp_applied"]["mesh"] == [2]
    # tiny scale: tiles of half the 192x192 picture, so both ranks get some (the reference tiles the same way)
    tiles = {"tile": [96, 96], "stride": [72, 72]}
    assert r.extra["parallel"]["vae_tiling"] == tiles and r.extra["parallel"]["reference"]["vae_tiling"] == tiles


def test_qwen_image_edit_ulysses2_gloo(tmp_path):
    (tmp_path / "w").mkdir()
    _write(tmp_path / "w", "qwen-image-edit-2511-1024", "qwen-ulysses2", {"ulysses": 2}, _qwen_two_heads)
    r = _run(tmp_path, "qwen-ulysses2")
    _check(r)
    assert r.extra["parallel"]["applied"]["models"] == ["QwenImageTransformer2DModel"]


def test_qwen_image_edit_ulysses2_with_cache_dit(tmp_path):
    # the matrix's ulysses2-cache_dit cell: diffusers' context parallelism, then cache-dit's DBCache on top
    (tmp_path / "w").mkdir()
    _write(tmp_path / "w", "qwen-image-edit-2511-1024-cache-dit", "qwen-cd-ulysses2", {"ulysses": 2}, _qwen_two_heads)
    r = _run(tmp_path, "qwen-cd-ulysses2")
    _check(r)
    assert r.extra["applied"]["cache"] == "cache_dit"
    assert r.extra["cache"][0]["cached_steps"] > 0  # cache-dit did cache under context parallelism


def test_one_rank_job_through_the_same_launcher(tmp_path):
    # what a single-GPU machine runs before the multi-GPU run adds ranks: torchrun, one rank, a process group
    from runners.launch import run_job
    from runners.measurements import WorkerOk

    (tmp_path / "w").mkdir()
    _write(tmp_path / "w", "wan22-ti2v-5b-720p", "wan-world1", {})
    outs, wall, timed_out = run_job(
        tmp_path / "w" / "wan-world1.yaml", scale="tiny", device="cpu", world=1, job_dir=tmp_path / "job",
        timeout_s=300, log=tmp_path / "job.log",
    )  # fmt: skip
    assert not timed_out and len(outs) == 1 and isinstance(outs[0], WorkerOk), outs
    applied = outs[0].applied["parallel"]
    assert applied["world"] == 1 and applied["backend"] == "gloo" and applied["library"] is None
    assert outs[0].metrics.samples("denoise_step_latency")
    assert not outs[0].metrics.samples("denoise_step_comm_time")  # one rank: no collective, no comm metric


def _fewer_steps(d: dict) -> None:  # what these tests check is the launch, the libraries and the picture
    d["tiny"]["generation"]["num_inference_steps"] = 6
    d["tiny"]["warmup_generations"] = 0


def test_hunyuanimage_tp2_with_cache_dit_in_one_enable_cache_call(tmp_path):
    # cache-dit shards HunyuanImage itself (tensor parallel, DTensor over gloo), and takes its cache in the same
    # enable_cache call (in inference mode, as the weights were built)
    (tmp_path / "w").mkdir()

    def cached(d: dict) -> None:
        _fewer_steps(d)
        d["tiny"]["options"] = {"cache": "cache_dit", "cache_config": {
            "Fn_compute_blocks": 1, "Bn_compute_blocks": 0, "residual_diff_threshold": 0.6, "max_warmup_steps": 1,
            "max_continuous_cached_steps": 2}}  # fmt: skip

    _write(tmp_path / "w", "hunyuanimage-2.1-2048", "hy-cd-tp2", {"tp": 2}, cached)
    r = _run(tmp_path, "hy-cd-tp2")
    assert r.status == "ok", r.error
    names = {m.name: m for m in r.metrics}
    assert names["parallel_psnr"].repeats[0][0] >= 30.0 and names["parallel_ssim"].repeats[0][0] >= 0.97
    applied = r.extra["parallel"]["applied"]
    assert applied["library"] == "cache-dit" and applied["tp"] == 2 and applied["cpu_accommodation"]
    assert applied["api"].endswith("with the cache_config in the same call")
    assert r.extra["applied"]["cache"] == "cache_dit" and r.extra["applied"]["with_parallelism"] is True
    assert r.extra["cache"][0]["cached_steps"] > 0  # cache-dit cached under its own parallelism


def test_more_ranks_than_cores_with_oversubscribe(tmp_path):
    # --oversubscribe: a 4-rank job on a machine of fewer cores validates the picture; its timings do not measure
    # scaling, so the result carries no scaling metrics (on a machine of 4+ cores the job is not oversubscribed)
    (tmp_path / "w").mkdir()
    _write(tmp_path / "w", "wan22-ti2v-5b-720p", "wan-ulysses4", {"ulysses": 4}, _fewer_steps)
    r = _run(tmp_path, "wan-ulysses4", oversubscribe=True)
    assert r.status == "ok", r.error
    names = {m.name for m in r.metrics}
    assert {f"peak_memory_rank{k}" for k in range(4)} <= names and "parallel_psnr" in names
    p = r.extra["parallel"]
    assert p["applied"]["world"] == 4 and p["output_mismatch"] is False
    if (os.cpu_count() or 1) < 4:
        assert p["oversubscribed"] == {"ranks": 4, "cores": os.cpu_count()}
        assert "scaling_efficiency" not in names and "rank_step_spread" not in names
        assert p["per_job"][0]["scaling_efficiency"] is not None  # still shown, as a number of the job
    else:
        assert p["oversubscribed"] is None and "scaling_efficiency" in names


def test_oversubscribe_is_for_cpu_only(monkeypatch, tmp_path):
    import runners.device
    from runners import run_lane
    from runners.parallel import OVERSUBSCRIBE_PER_CORE, device_slots

    assert device_slots("cpu", oversubscribe=True) == (os.cpu_count() or 1) * OVERSUBSCRIBE_PER_CORE
    monkeypatch.setattr(runners.device, "resolve", lambda device: "cuda")  # as on a GPU machine
    with pytest.raises(InputError) as err:
        run_lane("presubmit", device="cuda", out_dir=tmp_path / "out", oversubscribe=True)
    assert err.value.field == "--oversubscribe" and "on cpu only" in str(err.value)
    assert not (tmp_path / "out").exists()
