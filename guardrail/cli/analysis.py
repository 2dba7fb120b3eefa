"""`guardrail detect SERIES.csv`: change points in one series (reports; never gates)."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from guardrail.cli.app import app, echo_json
from guardrail.errors import InputError

REQUIRED_COLUMNS = ("time", "commit", "value")


@dataclass(frozen=True)
class SeriesRow:
    time: str
    commit: str
    value: float


def read_series_csv(path: Path) -> list[SeriesRow]:
    """Rows of a `time,commit,value` CSV, oldest first as written; errors name the file, row and column."""
    name = str(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            try:
                header = next(reader)
            except StopIteration:
                raise InputError("empty file; expected a header 'time,commit,value'", file=name) from None
            header = [h.strip().lstrip("\ufeff").lower() for h in header]
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise InputError(
                    f"header lacks column(s) {', '.join(missing)}; expected 'time,commit,value'",
                    file=name,
                    field="header",
                )
            col = {c: header.index(c) for c in REQUIRED_COLUMNS}
            rows: list[SeriesRow] = []
            for lineno, rec in enumerate(reader, start=2):
                if not rec or all(not cell.strip() for cell in rec):
                    continue
                if len(rec) < len(header):
                    raise InputError(
                        f"has {len(rec)} columns, the header has {len(header)}",
                        file=name,
                        field=f"row {lineno}",
                    )
                raw = rec[col["value"]].strip()
                try:
                    value = float(raw)
                except ValueError:
                    raise InputError(
                        f"value {raw!r} is not a number", file=name, field=f"row {lineno}, column value"
                    ) from None
                if not math.isfinite(value):
                    raise InputError(f"value {raw!r} is not finite", file=name, field=f"row {lineno}, column value")
                rows.append(SeriesRow(rec[col["time"]].strip(), rec[col["commit"]].strip(), value))
    except FileNotFoundError:
        raise InputError("no such file", file=name) from None
    except UnicodeDecodeError:
        raise InputError("not a UTF-8 text file", file=name) from None
    except csv.Error as exc:
        raise InputError(f"malformed CSV: {exc}", file=name) from None
    return rows


def _finite(d: dict) -> dict:
    """Infinite sizes (a change from a zero level has no relative size) as null."""
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in d.items()}


def change_points_json(rows: list[SeriesRow], *, window: int, p_value: float, min_magnitude: float) -> dict:
    """The `guardrail.changepoints/v1` document for a series: lasting changes, and one-night suspects."""
    from guardrail.analysis.changepoints import detect_change_points, detect_suspects

    values = [r.value for r in rows]
    cps = detect_change_points(values, window=window, p_value=p_value, min_magnitude=min_magnitude)
    out = []
    for cp in cps:
        row, prev = rows[cp.index], rows[cp.index - 1]
        out.append(
            {**_finite(cp.to_dict()), "commit": row.commit, "time": row.time, "commit_range": [prev.commit, row.commit]}
        )
    suspects = [
        {**_finite(s.to_dict()), "commit": rows[s.index].commit, "time": rows[s.index].time}
        for s in detect_suspects(values, cps, window=window, p_value=p_value, min_magnitude=min_magnitude)
    ]
    return {
        "schema": "guardrail.changepoints/v1",
        "points": len(rows),
        "options": {"window": window, "p_value": p_value, "min_magnitude": min_magnitude},
        "change_points": out,
        "suspects": suspects,
    }


def _pct(change: float | None) -> str:
    return "n/a" if change is None else format(change * 100, "+.2f") + "%"


def render_change_points(doc: dict, name: str) -> str:
    cps = doc["change_points"]
    if not cps:
        lines = [f"{name}: no change points in {doc['points']} points."]
    else:
        lines = [f"{name}: {len(cps)} change point{'' if len(cps) == 1 else 's'} in {doc['points']} points"]
    for cp in cps:
        lines.append(
            f"  row {cp['index']:>6}  {cp['time']}  {cp['commit_range'][0]}..{cp['commit_range'][1]}  "
            f"{cp['before']:.6g} -> {cp['after']:.6g}  ({_pct(cp['change'])}, p={cp['p_value']:.2g})"
        )
    suspects = doc.get("suspects", [])
    if suspects:
        n = len(suspects)
        lines.append(f"  {n} suspect{'' if n == 1 else 's'} (one-night outliers, the series returns; not a change):")
    for s in suspects:
        lines.append(
            f"  row {s['index']:>6}  {s['time']}  {s['commit']}  "
            f"{s['value']:.6g} vs level {s['level']:.6g}  ({_pct(s['change'])}, p={s['p_value']:.2g})"
        )
    return "\n".join(lines)


@app.command("detect")
def detect(
    series: Annotated[Path, typer.Argument(help="CSV with header time,commit,value (oldest first).")],
    format: Annotated[str, typer.Option("--format", help="text or json")] = "text",
    window: Annotated[int, typer.Option("--window", help="Sliding window length (points).")] = 50,
    p_value: Annotated[float, typer.Option("--p-value", help="Significance level of a change point.")] = 0.001,
    min_magnitude: Annotated[
        float, typer.Option("--min-magnitude", help="Smallest relative change reported (0.01 = 1%).")
    ] = 0.01,
) -> None:
    """Change points in one series, each attributed to a commit range. Reports only; exit 0."""
    if format not in ("text", "json"):
        raise InputError(f"unknown format {format!r}; use text or json", field="--format")
    if window < 4:
        raise InputError("must be at least 4", field="--window")
    if not 0 < p_value < 1:
        raise InputError("must be in (0, 1)", field="--p-value")
    if min_magnitude < 0:
        raise InputError("must be >= 0", field="--min-magnitude")
    rows = read_series_csv(series)
    doc = change_points_json(rows, window=window, p_value=p_value, min_magnitude=min_magnitude)
    if format == "json":
        echo_json(doc, indent=2)
    else:
        typer.echo(render_change_points(doc, str(series)))
