"""The stored state of matrix cells: the newest result of each cell's workload, the worst verdict of its newest
check, and its scaling efficiency and output equivalence where the result measured them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from guardrail.matrix import Cell, CellPlan, Matrix
from guardrail.store import models as m
from guardrail.vocabulary import VERDICT_RANK

# The metrics a parallel result carries (runners/parallel.py): efficiency against the single-device run, and the
# output compared with the single-device output.
EFFICIENCY = "*efficiency*"
PSNR, SSIM = "*psnr*", "*ssim*"


@dataclass(frozen=True)
class CellStatus:
    run_id: int
    hardware: str
    at: datetime
    verdict: str | None  # the worst verdict of the newest check of the run for this workload; None: not checked
    efficiency: float | None
    psnr: float | None
    ssim: float | None

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "hardware": self.hardware,
            "at": self.at.isoformat(),
            "age_days": round((now - self.at).total_seconds() / 86400, 1),
            "verdict": self.verdict,
            "efficiency": self.efficiency,
            "psnr": self.psnr,
            "ssim": self.ssim,
        }


def _metric(values: dict[str, float], pattern: str) -> float | None:
    return next((v for k, v in sorted(values.items()) if fnmatchcase(k, pattern)), None)


def cell_status(session: Session, workloads: Iterable[str]) -> dict[str, CellStatus]:
    """The newest stored result of each workload name (any hardware), by run start time."""
    names = sorted(set(workloads))
    if not names:
        return {}
    newest = (
        select(m.Workload.name, func.max(m.Run.started_at).label("at"))
        .join(m.Result, m.Result.workload_id == m.Workload.id)
        .join(m.Run, m.Run.id == m.Result.run_id)
        .where(m.Workload.name.in_(names))
        .group_by(m.Workload.name)
        .subquery()
    )
    rows = session.execute(
        select(m.Result, m.Workload.name, m.Run)
        .join(m.Workload, m.Workload.id == m.Result.workload_id)
        .join(m.Run, m.Run.id == m.Result.run_id)
        .join(newest, (newest.c.name == m.Workload.name) & (newest.c.at == m.Run.started_at))
    ).all()
    out: dict[str, CellStatus] = {}
    for result, name, run in rows:
        if name in out:
            continue
        values: dict[str, float] = dict(
            session.execute(
                select(m.Series.metric, func.avg(m.Measurement.median))
                .join(m.Measurement, m.Measurement.series_id == m.Series.id)
                .where(m.Measurement.result_id == result.id)
                .group_by(m.Series.metric)
            ).all()
        )
        check = session.scalar(select(m.Check.id).where(m.Check.run_id == run.id).order_by(m.Check.id.desc()).limit(1))
        verdicts: list[str] = (
            list(
                session.scalars(
                    select(m.Verdict.verdict).where(m.Verdict.check_id == check, m.Verdict.workload == name)
                )
            )
            if check is not None
            else []
        )
        worst = max(verdicts, key=lambda v: VERDICT_RANK.get(v, -1), default=None)
        out[name] = CellStatus(
            run.id,
            run.hardware,
            run.started_at,
            worst,
            _metric(values, EFFICIENCY),
            _metric(values, PSNR),
            _metric(values, SSIM),
        )
    return out


def matrix_doc(
    matrices: Sequence[tuple[Matrix, str, list[CellPlan]]], status: dict[str, CellStatus], now: datetime
) -> dict[str, Any]:
    """The guardrail.matrix/v1 document: per family and lane, the cells to run with their cost and last state,
    and the unsupported cells with their reasons."""

    def cell(mx: Matrix, p: CellPlan) -> dict[str, Any]:
        c: Cell = p.cell
        name = c.workload(mx.workload)
        st = status.get(name)
        return {
            "cell": c.tag,
            "name": c.name,
            "workload": name,
            "values": dict(c.values),
            "world": c.world,
            "supported": p.supported,
            "reason": p.reason,
            "device_minutes": p.device_minutes,
            "last": st.to_dict(now) if st else None,
        }

    families = []
    for mx, lane, plans in matrices:
        run = [p for p in plans if p.supported]
        families.append(
            {
                "family": mx.family,
                "workload": mx.workload,
                "lane": lane,
                "selection": mx.lanes[lane].cells,
                "repeats": mx.lanes[lane].repeats,
                "device_minutes": sum(p.device_minutes for p in run),
                "cells": [cell(mx, p) for p in run],
                "unsupported": [cell(mx, p) for p in plans if not p.supported],
            }
        )
    return {"schema": "guardrail.matrix/v1", "families": families}
