"""A regression with profiles on a real store: `check` attaches the profile diff to the verdict (stored with the
check), the PR comment lists the top contributors, the run and alert pages draw them, the JSON API carries them;
without profiles the document is as before."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from guardrail.check import check_runs, find_runs
from guardrail.ingest import ingest
from guardrail.reports.markdown import render_markdown
from guardrail.store.db import session_scope
from guardrail.verdicts import VerdictsDoc
from tests.factories import noisy_repeats, result_doc, write
from tests.test_profile_diff import profile
from tests.timeline import iso

WL = "wan22-ti2v-5b-720p"


def _ops(attention_ms: float, jitter: np.random.Generator) -> dict:
    def steps(level: float) -> list[float]:
        return [round(float(level * (1 + jitter.normal(0, 0.003))), 3) for _ in range(5)]

    return {
        "aten::mm": (steps(400.0), 60),
        "aten::_flash_attention_forward": (steps(attention_ms), 20),
        "aten::native_layer_norm": (steps(80.0), 40),
        "aten::gelu": (steps(50.0), 20),
        "aten::add": (steps(20.0), 80),
    }


def _fill(url, tmp_path, *, with_profiles: bool = True) -> int:
    rng = np.random.default_rng(3)
    files = []
    for night in range(10):
        slow = night == 9
        doc = result_doc(
            workload=WL,
            lane="nightly",
            commit=f"{night:02d}" + "cd" * 19,
            started_at=iso(days=night - 12, hours=-7),
            run_id=f"n{night}",
            metrics={"denoise_step_latency": noisy_repeats(1100.0 if slow else 1000.0, repeats=3, rng=rng)},
        )
        if with_profiles and night in (7, 9):  # a profiled baseline night, and the slow night profiled
            prof = profile(_ops(400.0 if slow else 300.0, rng))
            prof["trace"] = f"n{night}.trace.json.gz"
            doc["extra"] = {"profile": prof}
        files.append(write(tmp_path / f"n{night}.json", doc))
    ingest(url, files)
    with session_scope(url) as s:
        return find_runs(s, run_id=None, commit="09" + "cd" * 19, lane=None)[0].id


def _check(url, run_id) -> dict:
    with session_scope(url, write=True) as s:
        return check_runs(s, find_runs(s, run_id=run_id, commit=None, lane=None)).to_dict()


def test_a_profiled_regression_carries_its_diff_to_the_comment_pages_and_api(db_url, tmp_path):
    run_id = _fill(db_url, tmp_path)
    doc = _check(db_url, run_id)
    (v,) = [v for v in doc["verdicts"] if v["metric"] == "denoise_step_latency"]
    assert v["verdict"] == "regression", v
    d = v["profile_diff"]
    top = d["contributors"][0]
    assert top["name"] == "aten::_flash_attention_forward"
    assert 80 < top["delta_ms"] < 120 and 0.8 < top["share"] < 1.2  # +100 ms of a ~+100 ms step regression
    assert d["explains"] and d["trace"] == "n9.trace.json.gz" and d["candidate_run"] == run_id
    assert d["baseline_run"] is not None and d["baseline_commit"].startswith("07")
    assert VerdictsDoc.model_validate(doc).verdicts[0].profile_diff is not None  # read back as typed

    md = render_markdown(doc)
    assert f"**Top contributors: {WL}**" in md
    assert "- `aten::_flash_attention_forward`: +" in md and "ms per step" in md

    from web.app import create_app

    with TestClient(create_app(db_url)) as client:
        api = client.get(f"/api/v1/runs/{run_id}").json()
        (res,) = api["results"]
        assert res["profile_diff"]["contributors"][0]["name"] == "aten::_flash_attention_forward"
        assert res["profile"]["trace"] == "n9.trace.json.gz" and res["profile"]["top_ops"][0]["name"] == "aten::mm"
        page = client.get(f"/runs/{run_id}").text
        assert f'id="profile-diff-{res["id"]}"' in page and 'class="profile-bars"' in page
        assert "aten::_flash_attention_forward" in page
        alerts = client.get("/api/v1/alerts").json()["alerts"]
        (alert,) = [a for a in alerts if a["workload"] == WL]
        detail = client.get(f"/api/v1/alerts/{alert['id']}").json()
        assert detail["profile_diff"]["contributors"][0]["name"] == "aten::_flash_attention_forward"
        page = client.get(f"/alerts/{alert['id']}").text
        assert 'id="alert-profile-diff"' in page and "Top contributors" in page


def test_without_profiles_nothing_is_added(db_url, tmp_path):
    run_id = _fill(db_url, tmp_path, with_profiles=False)
    doc = _check(db_url, run_id)
    (v,) = [v for v in doc["verdicts"] if v["metric"] == "denoise_step_latency"]
    assert v["verdict"] == "regression" and "profile_diff" not in v
    assert "Top contributors" not in render_markdown(doc)
    from web.app import create_app

    with TestClient(create_app(db_url)) as client:
        (res,) = client.get(f"/api/v1/runs/{run_id}").json()["results"]
        assert res["profile_diff"] is None and res["profile"] is None
        assert 'class="profile-bars"' not in client.get(f"/runs/{run_id}").text
