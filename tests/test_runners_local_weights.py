"""Local weights: a real pipeline saved to disk (the tiny Wan2.2-TI2V-5B, built in code and written with
diffusers' save_pretrained) is loaded by `--scale full` from $GUARDRAIL_MODEL_ROOT/<repo_id>, never the hub,
and the result records the directory and a digest of it (also in the environment, so that a change of the
weights is annotated on the history like a software change)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytest.importorskip("diffusers")
pytest.importorskip("torch")

from guardrail.schema import load_result  # noqa: E402

pytestmark = [pytest.mark.runners]
WORKLOADS = Path(__file__).resolve().parent.parent / "workloads"
SOURCE = "wan22-ti2v-5b-720p"


def _save_tiny_pipeline(root: Path) -> Path:
    import diffusers

    from runners.components import build_synthetic, import_classes
    from runners.workloads import load_workload

    spec = load_workload(WORKLOADS / f"{SOURCE}.yaml")
    import_classes(spec, "tiny")
    pipe = getattr(diffusers, spec.pipeline)(**build_synthetic(spec, "tiny", "cpu"))
    out = root / spec.model.repo_id
    pipe.save_pretrained(out)
    return out


def test_full_scale_loads_local_weights_from_the_model_root_and_records_them(tmp_path, monkeypatch):
    from runners import run_lane
    from runners.components import weights_digest

    saved = _save_tiny_pipeline(tmp_path / "models")
    monkeypatch.setenv("GUARDRAIL_MODEL_ROOT", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # any hub access would fail the run
    data = yaml.safe_load((WORKLOADS / f"{SOURCE}.yaml").read_text())
    # the weights on disk are tiny: generate at the tiny geometry, in float32 on CPU
    data.update(name="local-wan", lanes=["presubmit"], dtype="float32", warmup_generations=0)
    data["generation"] = {**data["generation"], **data["tiny"]["generation"]}
    wdir = tmp_path / "workloads"
    wdir.mkdir()
    (wdir / "local-wan.yaml").write_text(yaml.safe_dump(data, sort_keys=False))

    files = run_lane(
        "presubmit", names=["local-wan"], device="cpu", scale="full", repeats=1, out_dir=tmp_path / "out",
        progress=False, workloads_dir=wdir,
    )  # fmt: skip
    r = load_result(files[0])
    assert r.status == "ok", r.error
    assert r.extra["weights"] == str(saved)
    assert r.extra["weights_digest"] == weights_digest(str(saved))
    assert r.environment.software["model_weights"] == r.extra["weights_digest"]  # beside the numbers
    assert {m.name for m in r.metrics} >= {"denoise_step_latency", "e2e_latency", "vae_decode_latency"}


def test_weights_digest_changes_with_a_config_or_a_tensor_header_and_not_otherwise(tmp_path):
    from runners.components import weights_digest

    d = tmp_path / "m"
    (d / "transformer").mkdir(parents=True)
    cfg = d / "transformer" / "config.json"
    cfg.write_text('{"num_layers": 30}')
    big = d / "transformer" / "model.safetensors"
    header = b'{"w":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}}'
    big.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * (5 << 20))  # over the 4 MiB content cut
    first = weights_digest(str(d))
    assert weights_digest(str(d)) == first and first.startswith("sha256:")
    cfg.write_text('{"num_layers": 40}')
    assert weights_digest(str(d)) != first
    cfg.write_text('{"num_layers": 30}')
    header2 = header.replace(b"[4]", b"[2]")
    big.write_bytes(len(header2).to_bytes(8, "little") + header2 + b"\0" * (5 << 20))
    assert weights_digest(str(d)) != first
