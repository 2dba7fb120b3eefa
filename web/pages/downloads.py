"""Table downloads: `/download/{table}.csv` and `.parquet` for runs, series, verdicts and alerts.

Built from guardrail.frames with the same filters as the pages; CSV text cells are neutralised against
spreadsheet formula injection (docs/frames.md)."""

from __future__ import annotations

import io
import re
from typing import Annotated, Literal

import anyio.to_thread
import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from guardrail import frames
from web.auth import require_reader
from web.pages.rendering import Opt
from web.params import MAX_ID

reads = APIRouter(include_in_schema=False, dependencies=[Depends(require_reader)])

Table = Literal["runs", "series", "verdicts", "alerts"]
Format = Literal["csv", "parquet"]
OptId = Annotated[int | None, Query(ge=1, le=MAX_ID)]

# A spreadsheet reads a cell starting with one of these as a formula (OWASP "CSV injection"); names, notes and
# commit messages come from result files and triage forms, so such cells get a leading apostrophe.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _csv(df: pd.DataFrame) -> bytes:
    # Text columns are "str" under pandas 3, object under pandas 2.
    text_cols = [c for c in df.columns if df[c].dtype == object or pd.api.types.is_string_dtype(df[c])]
    safe = df.copy()
    for c in text_cols:
        safe[c] = safe[c].map(neutralise)
    return safe.to_csv(index=False).encode()


def _parquet(df: pd.DataFrame) -> bytes:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise HTTPException(
            406, "Parquet downloads need pyarrow: pip install 'perf-guardrail[parquet]' (or download .csv)"
        ) from None
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def _filename(table: str, parts: list[object]) -> str:
    name = "-".join([table, *(str(p) for p in parts if p not in (None, ""))])
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:150]


@reads.get("/download/{table}.{fmt}")
async def download(
    request: Request,
    table: Table,
    fmt: Format,
    workload: Opt = None,
    metric: Opt = None,
    hardware: Opt = None,
    lane: Opt = None,
    branch: Opt = None,
    state: Opt = None,
    kind: Opt = None,
    verdict: Opt = None,
    series: OptId = None,
    run: OptId = None,
    pr: OptId = None,
):
    db = request.app.state.db_url
    w, mt, hw, ln, br = workload or None, metric or None, hardware or None, lane or None, branch or None

    def build():
        if table == "series":
            return frames.series(db, workload=w, metric=mt, hardware=hw, lane=ln, branch=br, series_id=series), [
                series and f"s{series}", w, mt, hw, ln,
            ]  # fmt: skip
        if table == "runs":
            return frames.runs(db, lane=ln, hardware=hw, branch=br, pr=pr), [ln, hw, br, pr and f"pr{pr}"]
        if table == "verdicts":
            return frames.verdicts(db, run, verdict=verdict or None, workload=w, lane=ln), [run and f"run{run}", w]
        states = [x for x in (state or "").split(",") if x] or None
        return frames.alerts(db, states, kind or None, workload=w, hardware=hw, lane=ln), [state, kind, w, hw, ln]

    df, parts = await anyio.to_thread.run_sync(build)
    body = _csv(df) if fmt == "csv" else _parquet(df)
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/vnd.apache.parquet"
    name = f"{_filename(table, parts)}.{fmt}"
    return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})
