"""Reports: markdown for PR comments, job summaries and the CLI; the GitHub client that posts them."""

from guardrail.reports.markdown import derive_status, doc_status, escape_md, render_markdown, summary_text

__all__ = ["derive_status", "doc_status", "escape_md", "render_markdown", "summary_text"]
