"""The workload digest: a series' identity, shared by the adapters and the runners."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def digest(dims: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of the workload's dimensions (sorted keys, no spaces)."""
    canonical = json.dumps(dims, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
