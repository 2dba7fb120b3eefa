"""Values that several read models write the same way: instants as ISO-8601 text, and links that are safe to
render."""

from __future__ import annotations

import re
from datetime import datetime

_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")


def iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def commit_url(repo: str | None, sha: str | None) -> str | None:
    """A link to the commit on GitHub when the repository is an owner/name and the commit a hex sha."""
    if repo and sha and _REPO.match(repo) and _SHA.match(sha):
        return f"https://github.com/{repo}/commit/{sha}"
    return None


def safe_url(url: str | None) -> str | None:
    """Only http(s) links are rendered as links (a javascript: URL in a result file stays text)."""
    return url if url and url.startswith(("https://", "http://")) else None
