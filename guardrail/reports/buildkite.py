"""A Buildkite build annotation for a check: body, style and context, and the agent command lines that carry it.

The body is the PR comment's markdown (guardrail.reports.markdown, built from the same typed verdicts document):
Buildkite renders CommonMark with GitHub's extensions, `<details>` included. Nothing here runs a process; the
CLI (guardrail.cli.buildkite) hands these argv lists to the real `buildkite-agent`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from guardrail.reports.markdown import DEFAULT_TITLE, Report, doc_status, render_markdown
from guardrail.verdicts import RunInfo, VerdictsDoc, WorkloadError

AGENT = "buildkite-agent"
# buildkite-agent annotate refuses bodies over 1 MiB (bytes, as encoded): keep clear of it.
ANNOTATION_LIMIT = 1024 * 1024 - 4096
# Style by the check's status: a regression is an error box, no verdict (infrastructure) a warning.
STYLE: dict[str, Literal["success", "info", "warning", "error"]] = {
    "failure": "error",
    "error": "warning",
    "success": "success",
    "pending": "info",
}
RESULT_PATTERNS = ("results/**/*",)


@dataclass(frozen=True)
class Annotation:
    body: str
    style: Literal["success", "info", "warning", "error"]
    context: str


def context_for(key: str) -> str:
    """One annotation per lane (and device): running again with the same context replaces it."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in key)[:80] or "default"
    return f"perf-guardrail-{safe}"


def fit_annotation(body: str, limit: int = ANNOTATION_LIMIT) -> str:
    """Cut at a line boundary so the UTF-8 body stays under Buildkite's limit, closing an open fold."""
    data = body.encode("utf-8")
    if len(data) <= limit:
        return body
    note = "\n\n_… truncated: the full report is on the dashboard and in the result artifacts._\n"
    cut = data[: limit - len(note.encode()) - 20].decode("utf-8", errors="ignore")
    cut = cut[: cut.rfind("\n")] if "\n" in cut else cut
    if cut.count("<details>") > cut.count("</details>"):
        cut += "\n\n</details>"
    return cut + note


def error_doc(why: str, *, lane: str | None = None, commit: str | None = None) -> VerdictsDoc:
    """The document of a lane that produced no verdict (the step that failed, the exit code's meaning)."""
    return VerdictsDoc(
        run=RunInfo(lane=lane, commit=commit),
        errors=[WorkloadError(workload="performance check", status="error", message=why)],
        status="error",
    )


def annotation(
    doc: Report,
    *,
    key: str,
    dashboard_url: str | None = None,
    title: str = DEFAULT_TITLE,
) -> Annotation:
    """The annotation of one lane's check: the report as markdown, its style by the verdict, its context by key."""
    status = doc_status(doc)
    body = render_markdown(doc, dashboard_url=dashboard_url, title=f"{title}: {key}")
    return Annotation(body=fit_annotation(body), style=STYLE[status], context=context_for(key))


def annotate_argv(ann: Annotation, agent: str = AGENT) -> list[str]:
    """`buildkite-agent annotate --style S --context C`; the body goes on stdin (no argv length limit, and
    nothing of it shows in a process list)."""
    return [agent, "annotate", "--style", ann.style, "--context", ann.context]


def artifact_upload_argv(patterns: tuple[str, ...] = RESULT_PATTERNS, agent: str = AGENT) -> list[str]:
    """`buildkite-agent artifact upload "results/**/*"`: several globs go as one argument, split by `;`."""
    return [agent, "artifact", "upload", ";".join(patterns)]
