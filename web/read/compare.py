"""Two runs side by side: per workload x metric, each run's median and the change between them."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from web.read.runs import run_detail


def compare_runs(session: Session, a: int, b: int) -> dict[str, Any]:
    """Per workload x metric of either run: each run's median and verdict, and b / a - 1."""
    left, right = run_detail(session, a), run_detail(session, b)

    def index(d: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(r["workload"], x["metric"]): {**x, "status": r["status"]} for r in d["results"] for x in r["metrics"]}

    ia, ib = index(left), index(right)
    rows = []
    for key in sorted(set(ia) | set(ib)):
        xa, xb = ia.get(key), ib.get(key)
        ma, mb = (xa or {}).get("median"), (xb or {}).get("median")
        rows.append(
            {
                "workload": key[0],
                "metric": key[1],
                "unit": (ia[key] if key in ia else ib[key])["unit"],
                "a": ma,
                "b": mb,
                "verdict_a": (xa or {}).get("verdict"),
                "verdict_b": (xb or {}).get("verdict"),
                "change": (mb / ma - 1.0) if ma and mb is not None else None,
            }
        )
    return {"schema": "guardrail.web.compare/v1", "a": left["run"], "b": right["run"], "rows": rows}
