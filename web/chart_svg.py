"""The busiest pages' SVG as one string per chart (web.charts gives the geometry), built here rather than by
Jinja2 loops: a series page draws ~50 points with ~8 attributes each, and Jinja2's per-attribute lookup and
escaping cost more CPU than the page's queries. Every text passes through markupsafe's escape (what autoescape
does); numbers are written as Jinja2 writes them (str). The output is byte for byte what the templates drew."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape


def series_svg(chart: dict[str, Any], metric: str) -> Markup:
    c = chart
    left, right, top, bottom = c["left"], c["right"], c["top"], c["bottom"]
    out = [
        f'<svg id="history" viewBox="0 0 {c["width"]} {c["height"]}" width="100%" role="img" '
        f'aria-label="history of {escape(metric)}">\n'
    ]
    for t in c["yticks"]:
        y = t["y"]
        out.append(
            f'  <line class="gridline" x1="{left}" x2="{right}" y1="{y}" y2="{y}"/>\n'
            f'  <text class="tick" x="{left - 6}" y="{y + 4}" text-anchor="end">{escape(t["label"])}</text>\n'
        )
    for t in c["xticks"]:
        out.append(
            f'<text class="tick" x="{t["x"]}" y="{bottom + 18}" text-anchor="middle">{escape(t["label"])}</text>'
        )
    b = c["band"]
    if b:
        out.append(
            f'  <g class="band"><title>{escape(b["title"])}</title>\n'
            f'  <rect x="{b["x"]}" y="{b["y"]}" width="{b["w"]}" height="{b["h"]}"/>\n'
            f'  <line x1="{b["x"]}" x2="{b["x"] + b["w"]}" y1="{b["median_y"]}" y2="{b["median_y"]}"/></g>\n'
        )
    for e in c["env_changes"]:
        out.append(
            f'  <g class="envchange"><title>environment changed: {escape(e["title"])}</title>\n'
            f'  <line x1="{e["x"]}" x2="{e["x"]}" y1="{top}" y2="{bottom}"/>\n'
            f'  <text x="{e["x"] + 3}" y="{top + 10}">{escape(e["label"])}</text></g>\n'
        )
    for cp in c["change_points"]:
        out.append(
            f'  <g class="cp cp-{escape(cp["source"])}"><title>{escape(cp["title"])}</title>\n'
            f'  <line x1="{cp["x"]}" x2="{cp["x"]}" y1="{top}" y2="{bottom}"/></g>\n'
        )
    out.append(f'  <path class="line" d="{escape(c["path"])}"/>\n')
    for p in c["points"]:
        cx = p["cx"]
        out.append(
            f'  <a href="/runs/{p["run_id"]}" class="pt"><title>{escape(p["title"])}</title>\n'
            f'  <line class="interval" x1="{cx}" x2="{cx}" y1="{p["y1"]}" y2="{p["y2"]}"/>\n'
            f'  <circle cx="{cx}" cy="{p["cy"]}" r="3.5"/></a>\n'
        )
    out.append("</svg>")
    return Markup("".join(out))


def strip_svg(strip: dict[str, Any]) -> Markup:
    """The series page's samples strip (one row of dots per repeat, a tick at each row's median)."""
    out = [f'<svg class="strip" viewBox="0 0 {strip["width"]} {strip["height"]}" width="100%">\n']
    for r in strip["rows"]:
        cy, color = r["cy"], escape(r["color"])
        out.append(
            f'<g><title>{escape(r["title"])}</title><text class="tick" x="4" y="{cy + 4}">{escape(r["label"])}</text>\n'
        )
        out.extend(f'<circle cx="{x}" cy="{cy}" r="2.5" fill="{color}" fill-opacity="0.6"/>' for x in r["xs"])
        if r["median_x"] is not None:
            mx = r["median_x"]
            out.append(f'<line x1="{mx}" x2="{mx}" y1="{cy - 8}" y2="{cy + 8}" class="median"/>')
        out.append("</g>\n")
    axis = strip["axis_y"] + 10
    for t in strip["ticks"]:
        out.append(f'<text class="tick" x="{t["x"]}" y="{axis}" text-anchor="middle">{escape(t["label"])}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def mini_strip_svg(strip: dict[str, Any]) -> Markup:
    """The run page's small samples strip in a metrics table cell."""
    w, h = strip["width"], strip["height"]
    out = [f'<svg class="mini" viewBox="0 0 {w} {h}" width="{w}" height="{h}">\n']
    for r in strip["rows"]:
        cy, color = r["cy"], escape(r["color"])
        out.append(f"<g><title>{escape(r['title'])}</title>")
        out.extend(f'<circle cx="{x}" cy="{cy}" r="2" fill="{color}"/>' for x in r["xs"])
        out.append("</g>")
    out.append("</svg>")
    return Markup("".join(out))


def hist_svg(hist: dict[str, Any]) -> Markup:
    out = [f'<svg class="hist" viewBox="0 0 {hist["width"]} {hist["height"]}" width="100%">\n']
    for b in hist["bars"]:
        out.append(
            f'<rect x="{b["x"]}" y="{b["y"]}" width="{b["w"]}" height="{b["h"]}">'
            f"<title>{escape(b['title'])}</title></rect>"
        )
    axis = hist["axis_y"] + 14
    for t in hist["ticks"]:
        out.append(f'<text class="tick" x="{t["x"]}" y="{axis}" text-anchor="middle">{escape(t["label"])}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def sparkline_svg(values: list[float], *, width: int = 100, height: int = 20) -> Markup:
    """The series index's tiny inline trend line of a series' newest per-run values (numbers only, no text)."""
    if len(values) < 2:
        return Markup("")
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    step = (width - 2) / (len(values) - 1)
    pts = " ".join(
        f"{1 + i * step:.1f},{height - 2 - (v - lo) / span * (height - 4):.1f}" for i, v in enumerate(values)
    )
    return Markup(
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" aria-hidden="true">'
        f'<polyline points="{pts}" fill="none" stroke="#1f77b4" stroke-width="1.5"/></svg>'
    )
