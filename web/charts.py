"""Server-side chart geometry: numbers in, SVG coordinates out. Templates draw them as inline SVG, so the
charts work without JavaScript and every label passes through Jinja2's autoescape."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def fmt(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    a = abs(v)
    if a >= 1e5 or (0 < a < 1e-3):
        return f"{v:.3g}"
    return f"{v:,.4g}" if a < 1000 else f"{v:,.0f}"


def median(vals: list[float]) -> float:
    """np.median of a short list of floats without numpy's per-call overhead: the same float (the middle value,
    or the two middle values added and halved, as numpy's mean of two does)."""
    s = sorted(vals)
    k = len(s) // 2
    return s[k] if len(s) % 2 else (s[k - 1] + s[k]) / 2


class Scale:
    def __init__(self, lo: float, hi: float, px_lo: float, px_hi: float):
        if hi <= lo:
            pad = abs(lo) * 0.05 or 1.0
            lo, hi = lo - pad, hi + pad
        self.lo, self.hi, self.px_lo, self.px_hi = lo, hi, px_lo, px_hi

    def __call__(self, v: float) -> float:
        return round(self.px_lo + (v - self.lo) / (self.hi - self.lo) * (self.px_hi - self.px_lo), 1)


def series_chart(detail: dict[str, Any], *, width: int = 900, height: int = 320) -> dict[str, Any] | None:
    """Per-run median with its interval (min..max of repeat medians), baseline band, change points and
    environment changes; one point per run, evenly spaced in time order."""
    pts = detail["points"]
    if not pts:
        return None
    left, right, top, bottom = 70, 45, 20, 40  # room for the last date label
    band = detail.get("baseline")
    ys = [p["low"] for p in pts] + [p["high"] for p in pts]
    if band:
        ys += [band["low"], band["high"]]
    lo, hi = min(ys), max(ys)
    pad = (hi - lo) * 0.05 or abs(hi) * 0.01 or 1.0
    y = Scale(lo - pad, hi + pad, height - bottom, top)
    n = len(pts)
    x = Scale(0, max(n - 1, 1), left, width - right)
    points = []
    for i, p in enumerate(pts):
        cx = x(i) if n > 1 else (left + width - right) / 2
        label = [
            f"{fmt(p['value'])} {detail['series']['unit']} (repeats {p['repeats']}: {fmt(p['low'])}–{fmt(p['high'])})",
            f"run {p['run_id']} · {p['time'][:16]}",
        ]
        if p.get("commit"):
            label.append(
                f"commit {p['commit'][:12]}" + (f": {p['message'].splitlines()[0][:120]}" if p.get("message") else "")
            )
        points.append(
            {
                "cx": cx,
                "cy": y(p["value"]),
                "y1": y(p["high"]),
                "y2": y(p["low"]),
                "run_id": p["run_id"],
                "title": "\n".join(label),
            }
        )
    path = " ".join(f"{'M' if i == 0 else 'L'}{q['cx']},{q['cy']}" for i, q in enumerate(points))
    band_geom = None
    if band:
        band_geom = {
            "y": y(band["high"]),
            "h": round(y(band["low"]) - y(band["high"]), 1),
            "x": left,
            "w": width - left - right,
            "median_y": y(band["median"]),
            "title": f"baseline ({band['source']}): {fmt(band['median'])}, band {fmt(band['low'])}–{fmt(band['high'])}",
        }
    cps = []
    for c in detail.get("change_points", []):
        i = c["index"]
        if 0 <= i < n:
            # The line sits between the last old point and the first new one.
            cx = (points[i]["cx"] + points[i - 1]["cx"]) / 2 if i > 0 else points[i]["cx"]
            change = c.get("change")
            cps.append(
                {
                    "x": round(cx, 1),
                    "source": c["source"],
                    "alert_id": c.get("alert_id"),
                    "title": f"change point ({c['source']}) at {(c.get('commit') or '')[:12]}: "
                    + (f"{change * 100:+.1f}%" if isinstance(change, int | float) else ""),
                }
            )
    envs = []
    for e in detail.get("environment_changes", []):
        i = e["index"]
        if 0 < i < n:
            what = ", ".join(f"{k} {a} → {b}" for k, (a, b) in e["changed"].items()) or "environment"
            envs.append({"x": round((points[i]["cx"] + points[i - 1]["cx"]) / 2, 1), "title": what, "label": what[:40]})
    yticks = [{"y": y(t), "label": fmt(t)} for t in _nice_ticks(lo - pad, hi + pad, 7)]
    step = max(1, math.ceil(n / 7))
    xticks = [{"x": points[i]["cx"], "label": pts[i]["time"][:10]} for i in range(0, n, step)]
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "top": top,
        "bottom": height - bottom,
        "points": points,
        "path": path,
        "band": band_geom,
        "change_points": cps,
        "env_changes": envs,
        "yticks": yticks,
        "xticks": xticks,
    }


def strip_chart(
    repeats: list[list[float]], *, width: int = 600, row_h: int = 22, max_dots: int = 400, unit: str = ""
) -> dict[str, Any] | None:
    """Samples of each repeat (fresh process) on one row; the median of the row is a tick."""
    flat = [v for r in repeats for v in r]
    if not flat:
        return None
    left, right = 60, 20
    lo, hi = min(flat), max(flat)
    x = Scale(lo, hi, left, width - right)
    rows = []
    for i, rep in enumerate(repeats):
        vals = (
            rep if len(rep) <= max_dots else list(np.asarray(rep)[np.linspace(0, len(rep) - 1, max_dots).astype(int)])
        )
        cy = 12 + i * row_h
        med = median(rep) if rep else None
        rows.append(
            {
                "cy": cy,
                "label": f"#{i + 1}",
                "color": PALETTE[i % len(PALETTE)],
                "xs": [x(v) for v in vals],
                "median_x": x(med) if med is not None else None,
                "title": f"repeat {i + 1}: {len(rep)} samples, median {fmt(med)} {unit}",
            }
        )
    height = 24 + len(repeats) * row_h
    ticks = [{"x": x(t), "label": fmt(t)} for t in _nice_ticks(x.lo, x.hi, 4)]
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "rows": rows,
        "ticks": ticks,
        "axis_y": height - 12,
    }


def histogram(values: list[float], *, width: int = 600, height: int = 140, bins: int = 30) -> dict[str, Any] | None:
    if len(values) < 2:
        return None
    arr = np.asarray(values)
    counts, edges = np.histogram(arr, bins=min(bins, max(5, arr.size // 3)))
    left, right, top, bottom = 60, 20, 10, 24
    x = Scale(float(edges[0]), float(edges[-1]), left, width - right)
    top_count = int(counts.max()) or 1
    bars = []
    for c, a, b in zip(counts, edges[:-1], edges[1:], strict=True):
        h = round((height - top - bottom) * c / top_count, 1)
        bars.append(
            {
                "x": x(a),
                "w": max(round(x(b) - x(a) - 1, 1), 1),
                "y": height - bottom - h,
                "h": h,
                "title": f"{fmt(a)}–{fmt(b)}: {int(c)}",
            }
        )
    ticks = [{"x": x(t), "label": fmt(t)} for t in _nice_ticks(float(edges[0]), float(edges[-1]), 4)]
    return {"width": width, "height": height, "bars": bars, "ticks": ticks, "axis_y": height - bottom}


def stage_bar(stages: list[dict[str, Any]], *, width: int = 600) -> dict[str, Any] | None:
    """One horizontal bar split by stage time (medians), each part labelled with its share."""
    parts = [s for s in stages if s["median"] and s["median"] > 0]
    total = sum(s["median"] for s in parts)
    if not parts or total <= 0:
        return None
    x0, segs = 0.0, []
    for i, s in enumerate(parts):
        w = width * s["median"] / total
        name = s["metric"].removeprefix("stage_mean.")
        segs.append(
            {
                "x": round(x0, 1),
                "w": round(w, 1),
                "color": PALETTE[i % len(PALETTE)],
                "name": name,
                "share": s["median"] / total,
                "title": f"{name}: {fmt(s['median'])} {s['unit']} ({s['median'] / total:.0%})",
            }
        )
        x0 += w
    return {"width": width, "segments": segs}


# Test verdict colours (history strips): the legend on each page names them, and each cell has a title.
VERDICT_COLORS = {"pass": "#2e7d32", "fail": "#c62828", "flaky": "#e69500", "skip": "#b8c0c8"}


def history_strip(verdicts: list[dict[str, Any]], *, cell: int = 9, gap: int = 2, height: int = 16) -> dict[str, Any]:
    """One cell per verdict, oldest left; runs left out as infrastructure failures are drawn hollow."""
    cells = []
    for i, v in enumerate(verdicts):
        color = VERDICT_COLORS.get(v["verdict"], "#7f7f7f")
        title = f"{v['verdict']} · {str(v.get('at') or '')[:16]} · {str(v.get('commit') or '')[:10]}"
        if v.get("attempts", 1) > 1:
            title += f" · {v['attempts']} attempts"
        if v.get("infra_excluded"):
            title += " · infra failure (not counted)"
        cells.append(
            {
                "x": i * (cell + gap),
                "color": color,
                "hollow": bool(v.get("infra_excluded")),
                "verdict": v["verdict"],
                "title": title,
                "run_id": v.get("run_id"),
            }
        )
    return {"width": max(len(cells) * (cell + gap) - gap, 1), "height": height, "cell": cell, "cells": cells}


def health_chart(
    figures: list[dict[str, Any]], field: str, *, width: int = 440, height: int = 170, percent: bool = False
) -> dict[str, Any] | None:
    """One line per lane x hardware over the days of ``figures`` (``guardrail.ci-health/v1`` figures);
    ``field`` is a figure key, or ``infra_errors`` (summed over kinds)."""
    days = sorted({f["day"] for f in figures})
    if not days:
        return None

    def value(f: dict[str, Any]) -> float | None:
        v = sum(f["infra_errors"].values()) if field == "infra_errors" else f.get(field)
        return None if v is None else float(v) * (100 if percent else 1)

    groups: dict[str, dict[str, float]] = {}
    for f in figures:
        v = value(f)
        if v is not None:
            name = f"{f['lane']} · {f['hardware'] or 'any'}"
            groups.setdefault(name, {})[f["day"]] = v
    vals = [v for g in groups.values() for v in g.values()]
    if not vals:
        return None
    left, right, top, bottom = 46, 22, 10, 28  # room for the last day label
    lo, hi = (0.0, 100.0) if percent else (0.0, max(vals) * 1.1 or 1.0)
    y = Scale(lo, hi, height - bottom, top)
    x = Scale(0, max(len(days) - 1, 1), left, width - right)
    lines = []
    for i, (name, g) in enumerate(sorted(groups.items())):
        pts = [
            {"cx": x(days.index(d)), "cy": y(v), "title": f"{name} {d}: {fmt(v)}{'%' if percent else ''}"}
            for d, v in sorted(g.items())
        ]
        lines.append(
            {
                "name": name,
                "color": PALETTE[i % len(PALETTE)],
                "points": pts,
                "path": " ".join(f"{p['cx']},{p['cy']}" for p in pts),
            }
        )
    step = max(1, len(days) // 6)
    xticks = [{"x": x(i), "label": d[5:]} for i, d in enumerate(days) if i % step == 0]
    ticks = _nice_ticks(lo, hi, 4)
    if field == "infra_errors":  # counts: whole numbers only
        ticks = [t for t in ticks if float(t).is_integer()] or [0.0]
    yticks = [{"y": y(t), "label": fmt(t) + ("%" if percent else "")} for t in ticks]
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "top": top,
        "bottom": height - bottom,
        "lines": lines,
        "xticks": xticks,
        "yticks": yticks,
    }


def series_plot_data(detail: dict[str, Any]) -> dict[str, Any] | None:
    """The series chart's data for the browser's charting library (uPlot), as aligned columns on one time
    axis (x: seconds since 1970, so gaps between runs show as gaps): main's per-run value, presubmit/PR points
    (never in main's line), the band of the baseline that judged each run, overlay lines, and the change-point
    and environment-change marks with their labels. None without points."""
    pts = detail["points"]
    if not pts:
        return None
    overlays = detail.get("overlay") or []
    xs = sorted({p["t"] for p in pts} | {t for o in overlays for t in o["t"]})
    at = {t: i for i, t in enumerate(xs)}

    def column() -> list[float | None]:
        return [None] * len(xs)

    main, pr, lo, hi = column(), column(), column(), column()
    runs: list[dict[str, Any] | None] = [None] * len(xs)
    for p in pts:
        i = at[p["t"]]
        (pr if p.get("kind") == "pr" else main)[i] = _finite(p["value"])
        lo[i], hi[i] = _finite(p.get("band_low")), _finite(p.get("band_high"))
        runs[i] = {
            "run": p["run_id"],
            "commit": (p["commit"] or "")[:10],
            "kind": p.get("kind", "main"),
            "pr": p.get("pr"),
            "lane": p.get("lane"),
        }
    lines = []
    for o in overlays:
        col = column()
        for t, v in zip(o["t"], o["values"], strict=True):
            col[at[t]] = _finite(v)
        lines.append({"label": o["label"], "values": col})
    marks = [
        {
            "t": pts[c["index"]]["t"],
            "kind": "change",
            "label": ("alert " + str(c["alert_id"]) if c.get("alert_id") else "change")
            + (f" {c['change']:+.1%}" if isinstance(c.get("change"), (int, float)) else ""),
        }
        for c in detail["change_points"]
        if c["index"] < len(pts)
    ] + [
        {"t": pts[e["index"]]["t"], "kind": "env", "label": "env: " + ", ".join(sorted(e["changed"]))[:60]}
        for e in detail["environment_changes"]
        if e["index"] < len(pts)
    ]
    s = detail["series"]
    return {
        "metric": s["metric"],
        "unit": s["unit"],
        "hardware": s["hardware"],
        "x": xs,
        "main": main,
        "pr": pr,
        "band_low": lo,
        "band_high": hi,
        "overlay": lines,
        "marks": marks,
        "runs": runs,
        "palette": list(PALETTE),
    }


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def json_for_script(data: Any) -> str:
    """JSON safe inside <script type="application/json">: '<', '>' and '&' as \\u escapes, so no text in it
    (a commit message, a lane name) can close the element or open a comment."""
    import json

    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
