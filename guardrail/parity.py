"""`guardrail parity`: GPU↔NPU parity from the stored JUnit results -- the rules file read and checked, the
runs of the reference and target hardware and their test verdicts read from the store, and the pure
:func:`guardrail.analysis.parity.parity` over them (docs/parity.md)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from guardrail.analysis.junit_model import VerdictKind, node_id
from guardrail.analysis.parity import GOAL, CaseResult, Exclusion, LaneRun, ParityRules, Substitution, parity
from guardrail.errors import InputError
from guardrail.store import junit_models as jm
from guardrail.store import models as m
from guardrail.yaml_files import read_yaml

DEFAULT_RULES_PATH = Path(__file__).resolve().parents[1] / "baselines" / "parity-rules.yaml"
_CHUNK = 500
_SECTIONS = {"normalise": ("pattern", "replace"), "gpu_only": ("pattern", "reason")}


def _regex(value: Any, *, file: str, field: str) -> re.Pattern[str]:
    if not isinstance(value, str) or not value:
        raise InputError("expected a non-empty regular expression", file=file, field=field)
    try:
        return re.compile(value)
    except re.error as exc:
        raise InputError(f"not a valid regular expression ({exc})", file=file, field=field) from None


def rules_from_mapping(data: Any, *, file: str) -> ParityRules:
    """Check the rules document key by key; an error names the file and the field (``normalise[1].pattern``)."""
    if data is None:
        return ParityRules()
    if not isinstance(data, dict):
        raise InputError("expected a mapping with normalise and gpu_only", file=file, field="$")
    for key in data:
        if key not in _SECTIONS:
            raise InputError(f"unknown key (known: {', '.join(_SECTIONS)})", file=file, field=str(key))
    parsed: dict[str, list[tuple[re.Pattern[str], str]]] = {}
    for section, (pattern_key, text_key) in _SECTIONS.items():
        entries = data.get(section) or []
        if not isinstance(entries, list):
            raise InputError("expected a list", file=file, field=section)
        out = parsed.setdefault(section, [])
        for i, entry in enumerate(entries):
            where = f"{section}[{i}]"
            if not isinstance(entry, dict):
                raise InputError(f"expected a mapping with {pattern_key} and {text_key}", file=file, field=where)
            extra = set(entry) - {pattern_key, text_key}
            if extra:
                raise InputError(
                    f"unknown key (known: {pattern_key}, {text_key})", file=file, field=f"{where}.{sorted(extra)[0]}"
                )
            pattern = _regex(entry.get(pattern_key), file=file, field=f"{where}.{pattern_key}")
            text = entry.get(text_key)
            # a replacement may be empty (delete the match); a reason may not: an exclusion says why
            if not isinstance(text, str) or (section == "gpu_only" and not text.strip()):
                what = "a string" if section == "normalise" else "a reason (why the target does not run it)"
                raise InputError(f"expected {what}", file=file, field=f"{where}.{text_key}")
            if section == "normalise":
                try:
                    pattern.sub(text, "")  # a bad group reference (\3 of two groups) fails here, not mid-report
                    pattern.sub(text, pattern.pattern)
                except (re.error, IndexError) as exc:
                    raise InputError(f"bad replacement ({exc})", file=file, field=f"{where}.{text_key}") from None
            out.append((pattern, text))
    return ParityRules(
        substitutions=tuple(Substitution(p, r) for p, r in parsed["normalise"]),
        exclusions=tuple(Exclusion(p, r) for p, r in parsed["gpu_only"]),
    )


def load_rules(path: str | Path | None = None) -> ParityRules:
    """The rules YAML (``baselines/parity-rules.yaml`` by default)."""
    p = Path(path) if path is not None else DEFAULT_RULES_PATH
    return rules_from_mapping(read_yaml(p, "parity rules"), file=str(p))


def _has_tests():  # a run that stored at least one JUnit file
    return exists().where(jm.ReportRow.run_id == m.Run.id)


def hardware_with_tests(session: Session) -> list[str]:
    """The hardware names of the stored runs that have JUnit results."""
    return list(session.scalars(select(m.Run.hardware).where(_has_tests()).distinct().order_by(m.Run.hardware)))


def _resolve(session: Session, name: str, option: str) -> str:
    known = hardware_with_tests(session)
    if name in known:
        return name
    folded = [h for h in known if h.lower() == name.lower()]
    if len(folded) == 1:
        return folded[0]
    raise InputError(
        f"no stored JUnit results on hardware {name!r} (stored: {', '.join(known) or 'none'})", field=option
    )


def _runs(
    session: Session, hardware: str, lanes: Sequence[str], since: datetime | None, until: datetime
) -> tuple[list[LaneRun], list[int]]:
    """One :class:`LaneRun` per lane and commit pair: every job attempt of one commit in one lane, since a rerun
    job runs only the failed tests and the pair's verdicts regroup all attempts (docs/flaky.md). Its cases are the
    pair's verdicts on this hardware, its minutes those of every attempt. A pair whose newest run was an
    infrastructure failure (verdicts ``infra_excluded``) is left out; its runs are returned second."""
    q = select(m.Run).where(m.Run.hardware == hardware, _has_tests(), m.Run.started_at <= until)
    if lanes:
        q = q.where(m.Run.lane.in_(lanes))
    if since is not None:
        q = q.where(m.Run.started_at >= since)
    runs = list(session.scalars(q.order_by(m.Run.started_at, m.Run.id)))
    if not runs:
        return [], []
    E, V, T = jm.ExecutionRow, jm.CaseVerdictRow, jm.CaseRow
    seconds: dict[int, float] = {}
    groups: dict[tuple[str, str], list[m.Run]] = {}
    for r in runs:
        groups.setdefault((r.lane, jm.pair_key(r.commit.sha if r.commit else None, r.base_commit, r.id)), []).append(r)
    ids = [r.id for r in runs]
    keys = sorted({pk for _, pk in groups})
    cases: dict[str, list[CaseResult]] = {}
    infra: set[str] = set()
    for i in range(0, max(len(ids), len(keys)), _CHUNK):  # bounded IN lists
        seconds.update(
            session.execute(
                select(E.run_id, func.sum(E.duration_s)).where(E.run_id.in_(ids[i : i + _CHUNK])).group_by(E.run_id)
            ).all()
        )
        vq = (
            select(V.pair_key, V.verdict, V.infra_excluded, T.file, T.suite, T.classname, T.name, T.params)
            .join(T, T.id == V.test_pk)
            .where(V.hardware == hardware, V.pair_key.in_(keys[i : i + _CHUNK]))
        )
        if lanes:  # one verdict per test, commit and hardware: it carries the lane of the test's newest run
            vq = vq.where(V.lane.in_(lanes))
        rows = session.connection().execute(vq)  # Core rows: the ORM layer doubled the read time
        for pk, verdict, excluded, file, suite, classname, name, params in rows:
            if excluded:
                infra.add(pk)
            cases.setdefault(pk, []).append(
                CaseResult(
                    node_id(file, classname, name, params), file or suite or classname or "", cast(VerdictKind, verdict)
                )
            )
    out, skipped = [], []
    for (lane, pk), rs in groups.items():
        if pk in infra:
            skipped.append(rs[-1].id)
            continue
        newest = rs[-1]
        minutes = sum(float(seconds.get(r.id) or 0.0) for r in rs) / 60
        out.append(LaneRun(lane, hardware, newest.id, newest.started_at, tuple(cases.get(pk, ())), minutes))
    return out, sorted(skipped)


def parity_doc(
    session: Session,
    *,
    reference: str,
    target: str,
    now: datetime,
    lanes: Sequence[str] = (),
    since: datetime | None = None,
    rules: ParityRules | None = None,
    rules_file: str | None = None,
    goal: float = GOAL,
) -> dict[str, Any]:
    """``guardrail.parity/v1`` of ``target`` against ``reference`` over the runs started in [since, now]."""
    ref_hw = _resolve(session, reference, "--reference")
    tgt_hw = _resolve(session, target, "--target")
    if ref_hw == tgt_hw:
        raise InputError(f"the reference and the target are the same hardware ({ref_hw})", field="--target")
    if lanes:
        stored = set(session.scalars(select(m.Run.lane).where(_has_tests()).distinct()))
        unknown = [ln for ln in lanes if ln not in stored]
        if unknown:
            raise InputError(
                f"no stored JUnit results in lane {unknown[0]!r} (stored: {', '.join(sorted(stored))})", field="--lane"
            )
    rules = rules if rules is not None else load_rules(rules_file)
    ref_runs, ref_infra = _runs(session, ref_hw, lanes, since, now)
    tgt_runs, tgt_infra = _runs(session, tgt_hw, lanes, since, now)
    doc = parity(ref_hw, tgt_hw, ref_runs, tgt_runs, rules, goal=goal).to_dict()
    doc["infra_failed_runs"] = {"reference": ref_infra, "target": tgt_infra}
    doc["lanes"] = list(lanes)
    doc["since"] = since.isoformat() if since is not None else None
    doc["until"] = now.isoformat()
    doc["rules"] = str(rules_file) if rules_file is not None else "baselines/parity-rules.yaml"
    return doc
