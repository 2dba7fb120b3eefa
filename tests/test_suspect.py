"""One-night spikes are `suspect` (issue 12, point 6): on a lane that confirms summary regressions (nightly), a
per-run summary series off its level for one night does not fail the check; the next night at that level is a
regression. Numbers alone for the judge, a real store for `check`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select

from guardrail.analysis.judgement import SUSPECT_NOTE, SeriesInput, judge
from guardrail.check import check_runs, find_runs
from guardrail.ingest import ingest
from guardrail.reports.markdown import render_markdown, summary_text
from guardrail.store import models as m
from guardrail.store.db import session_scope
from guardrail.verdicts import BaselineInfo, VerdictsDoc, exit_code
from tests.factories import result_doc, write
from tests.timeline import iso

METRIC = "latency_mean"  # one value per run (a summary the adapters mark), 1% threshold on nightly


@dataclass(frozen=True)
class Rules:
    fdr: float = 0.05
    alpha: float = 0.05
    max_looks: int = 1

    def threshold(self, metric: str) -> float:
        return 0.01


def _flat(n: int = 10, level: float = 1000.0) -> list[list[list[float]]]:
    rng = np.random.default_rng(3)
    return [[[float(level * (1 + rng.normal(0, 0.003)))]] for _ in range(n)]


def _judge(*, summary: bool, previous_regressed: bool, confirm: bool = True) -> str:
    s = SeriesInput(
        workload="w",
        metric=METRIC,
        hardware="H100",
        unit="ms",
        direction="lower_is_better",
        candidate=[[1320.0]],
        baseline=_flat(),
        history=_flat(),
        summary=summary,
        previous_regressed=previous_regressed,
    )
    doc = judge([s], Rules(), baseline=BaselineInfo(policy="nightly"), confirm_summary_regressions=confirm)
    return doc.verdicts[0].verdict


def test_the_judge_calls_a_first_night_summary_regression_suspect():
    assert _judge(summary=True, previous_regressed=False) == "suspect"
    assert _judge(summary=True, previous_regressed=True) == "regression"  # the second night confirms it
    assert _judge(summary=False, previous_regressed=False) == "regression"  # repeats of raw samples: no wait
    assert _judge(summary=True, previous_regressed=False, confirm=False) == "regression"  # a lane without the knob


def _night(url, tmp_path, i: int, value: float) -> int:
    doc = result_doc(
        lane="nightly",
        commit=f"main{i:02d}",
        started_at=iso(days=-20 + i),
        run_id=f"n{i}",
        metrics={METRIC: [[value]]},
    )
    doc["metrics"][0]["summary"] = "mean"
    return ingest(url, [write(tmp_path / f"n{i}.json", doc)]).run_ids[0]


def _check(url, run_id) -> VerdictsDoc:
    with session_scope(url, write=True) as s:
        return check_runs(s, find_runs(s, run_id=run_id, commit=None, lane=None))


def _nights(url, tmp_path, tail: list[float]) -> list[VerdictsDoc]:
    """10 flat nights (each checked, as the nightly does), then `tail`; the checks of the tail."""
    rng = np.random.default_rng(0)
    for i in range(10):
        _check(url, _night(url, tmp_path, i, float(1000.0 * (1 + rng.normal(0, 0.003)))))
    return [_check(url, _night(url, tmp_path, 10 + k, v)) for k, v in enumerate(tail)]


def _alerts(url) -> int:
    with session_scope(url) as s:
        return s.scalar(select(func.count()).select_from(m.Alert)) or 0


def test_a_one_night_spike_is_suspect_and_does_not_fail_the_nightly(db_url, tmp_path):
    spike, back = _nights(db_url, tmp_path, [1320.0, 1001.0])
    v = spike.verdicts[0]
    assert v.verdict == "suspect" and v.change is not None and v.change > 0.3, v
    assert v.explanation.endswith(SUSPECT_NOTE)
    assert exit_code(spike) == 0 and spike.status == "success"
    assert spike.summary is not None and spike.summary["suspect"] == 1 and spike.summary["regression"] == 0
    assert summary_text(spike) == "1 suspect"
    assert "🔍 suspect" in render_markdown(spike)
    assert back.verdicts[0].verdict not in ("regression", "suspect"), back.verdicts[0]
    assert exit_code(back) == 0
    assert _alerts(db_url) == 0


def test_a_lasting_step_is_suspect_then_a_regression(db_url, tmp_path):
    first, second = _nights(db_url, tmp_path, [1320.0, 1322.0])
    assert first.verdicts[0].verdict == "suspect" and exit_code(first) == 0
    assert second.verdicts[0].verdict == "regression", second.verdicts[0]
    assert exit_code(second) == 1 and second.status == "failure"
    with session_scope(db_url) as s:  # the stored rows the next night reads
        stored = s.scalars(select(m.Verdict.verdict).order_by(m.Verdict.id)).all()
    assert stored[-2:] == ["suspect", "regression"]
