"""What the ingest passes between reading and writing: validated documents in, a report of what was stored out."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the schema's pydantic models load when a file is validated, not with this module
    from guardrail.schema import Result


@dataclass(frozen=True)
class Document:
    """A validated result and where it came from."""

    path: str
    format: str
    result: Result
    content_hash: str


@dataclass
class IngestReport:
    stored: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    ignored: list[dict[str, Any]] = field(default_factory=list)  # files in a directory that are no result

    @property
    def run_ids(self) -> list[int]:
        return sorted({r["run_id"] for r in self.stored + self.skipped})

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "guardrail.ingest/v1",
            "stored": self.stored,
            "skipped": self.skipped,
            "ignored": self.ignored,
            "run_ids": self.run_ids,
        }


def content_hash(result: Result) -> str:
    """What tells two results of the same run and workload apart: sha256 of the canonical JSON."""
    canonical = json.dumps(result.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
