"""`guardrail bisect --dispatch local` end to end on CPU: a real git repository of 16 commits of a tiny numpy
workload (tests/bisect_repo.py) where one commit doubles the work and one later commit is broken; the
bisection runs the workload at each step through `guardrail run` in a worktree, ingests it as lane bisect,
skips the broken commit and names exactly the slow one."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from guardrail.store.db import session_scope
from guardrail.store.models import Bisection
from tests.bisect_repo import HARDWARE, THRESHOLD, WORKLOAD, build_repo
from tests.cli_inprocess import run_cli
from web.read.bisections import bisection


def _bisect(capsys, db: str, repo: Path, good: str, bad: str, *extra: str) -> tuple[int, dict, str]:
    code, out, err = run_cli(
        capsys, "bisect", "--repo", str(repo), "--good", good, "--bad", bad, "--workload", WORKLOAD,
        "--hardware", HARDWARE, "--db", db, "--format", "json", *THRESHOLD, *extra,
    )  # fmt: skip
    return code, (json.loads(out) if out.strip().startswith("{") else {}), err


def test_local_bisection_finds_the_slow_commit_and_skips_the_broken_one(tmp_path, capsys):
    # position 7 is the first midpoint of 0..15: broken there, the bisection must skip it and still converge
    shas = build_repo(tmp_path / "repo", n=16, slow_at=6, fail_at=(7,))
    db = f"sqlite:///{tmp_path / 'g.db'}"
    code, doc, err = _bisect(capsys, db, tmp_path / "repo", shas[0], shas[-1], "--dispatch", "local")
    assert code == 0, (err, doc.get("lines"))
    assert doc["state"] == "culprit" and doc["culprit"] == shas[6] and doc["config"]["threshold"] == 0.3
    c = doc["confidence"]
    assert c["culprit_vs_good"]["verdict"] == "regression" and c["culprit_vs_good"]["p_value"] < 0.05
    assert c["parent_vs_bad"]["verdict"] == "improvement" and c["parent_vs_bad"]["p_value"] < 0.05
    # (a step asking for more repeats is the shared machine's noise leaving a comparison unclear: allowed)
    runs = [s for s in doc["steps"] if s["action"] == "run" and "more repeats" not in s["why"]]
    assert [s["position"] for s in runs[:3]] == [0, 15, 7]  # the ends, then the middle
    # looked at twice before it is named: the confirmation, or a second look it already had for being unclear
    all_runs = [s for s in doc["steps"] if s["action"] == "run"]
    assert sum(s["position"] == 6 for s in all_runs) >= 2
    assert doc["steps"][-1]["readings"]["7"] == "skipped"
    assert len(runs) <= 2 + 1 + 4 + 1  # ends, the skipped one, log2(15) midpoints, the confirmation
    assert 0 < doc["spent_minutes"] < 5
    # stored: the row, its steps, the read model the alert page and the API share
    with session_scope(db) as s:
        b = s.get(Bisection, doc["id"])
        assert b is not None and b.culprit == shas[6] and len(b.steps) == len(doc["steps"])
        read = bisection(s, doc["id"])
    assert read["culprit"] == shas[6] and read["progress"]["open"] == 0 and read["progress"]["midpoints_left"] == 0
    assert read["progress"]["measured"] >= 5 and read["progress"]["measured"] < read["progress"]["tried"]  # 7 failed

    # Asked again, the stored bisection answers at once from the store: the same culprit, nothing rerun.
    code2, doc2, _ = _bisect(capsys, db, tmp_path / "repo", shas[0], shas[-1], "--dispatch", "local")
    assert code2 == 0 and doc2["culprit"] == shas[6] and doc2["id"] != doc["id"]
    assert [s["action"] for s in doc2["steps"]] == ["culprit"]


def test_print_plan_budget_and_bad_input(tmp_path, capsys, db_url):
    shas = build_repo(tmp_path / "repo", n=6, slow_at=3)
    repo = tmp_path / "repo"
    db = db_url  # SQLite and PostgreSQL: the local runs are ingested and read back on both
    # print: the plan for a human (both ends), stored as steps; asked again with nothing new, it waits
    code, doc, _ = _bisect(capsys, db, repo, shas[0][:10], "main", "--dispatch", "print")
    assert code == 0 and doc["state"] == "running"
    assert [(st["position"], st["outcome"]) for st in doc["steps"]] == [(0, "printed"), (5, "printed")]
    assert any(f"--run-at {shas[0]}" in line for line in doc["lines"])
    assert any(f"--run-at {shas[-1]}" in line for line in doc["lines"])
    printed = [line.strip() for line in doc["lines"] if "--run-at" in line]
    code, doc, _ = _bisect(capsys, db, repo, shas[0], shas[-1], "--dispatch", "print")
    assert code == 0 and len(doc["steps"]) == 2 and "waiting" in doc["lines"][-1]
    # the human runs the printed commands (the same database), then asks again: the next step is printed
    assert len(printed) == 2
    for line in printed:
        code, out, err = run_cli(capsys, *shlex.split(line)[1:], "--db", db)
        assert code == 0 and "2 repeat(s) of tiny-matmul stored as lane bisect" in out, err
    code, doc, _ = _bisect(capsys, db, repo, shas[0], shas[-1], "--dispatch", "print")
    nxt = doc["steps"][-1]
    assert code == 0 and len(doc["steps"]) == 3 and nxt["outcome"] == "printed"
    assert nxt["why"] == "midpoint" or "more repeats" in nxt["why"]

    # budget: one end measured already spends more than a tiny budget -> stop, exit 1, the range still open
    code, doc, _ = _bisect(capsys, db, repo, shas[1], shas[-1], "--dispatch", "local", "--budget-minutes", "0.0001")
    assert code == 1 and doc["stop_reason"] == "budget_spent" and doc["open_range"]["positions"] == [0, 4]

    for good, bad, needle in (
        (shas[2], shas[2], "the same commit"),
        ("deadbeef", shas[-1], "unknown commit"),
        (shas[-1], shas[0], "not on the first-parent history"),
    ):
        code, _, err = _bisect(capsys, db, repo, good, bad, "--dispatch", "print")
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    # a threshold that is not a fraction (the last --threshold given wins over the helper's)
    code, _, err = _bisect(capsys, db, repo, shas[0], shas[-1], "--dispatch", "print", "--threshold", "25")
    assert code == 2 and "--threshold" in err and "fraction" in err and len(err.strip().splitlines()) == 1


def test_an_end_that_always_fails_is_an_infra_failure(tmp_path, capsys):
    """The good end's workload fails every time: tried max_infra (2) times, then exit 3 with the reason."""
    shas = build_repo(tmp_path / "repo", n=3, slow_at=2, fail_at=(0,))
    db = f"sqlite:///{tmp_path / 'g.db'}"
    code, doc, _ = _bisect(capsys, db, tmp_path / "repo", shas[0], shas[-1], "--dispatch", "local")
    assert code == 3 and doc["state"] == "stopped" and doc["stop_reason"] == "infra"
    assert [s["position"] for s in doc["steps"] if s["action"] == "run"] == [0, 0]
    assert "the good end failed 2 times for infrastructure reasons" in doc["lines"][-1]
