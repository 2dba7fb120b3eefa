"""Client for `guardrail ingest --server URL`: post result files to a running service's ingest API."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from guardrail.errors import InfraError, InputError
from guardrail.reports.github import HttpSender, RetryPolicy

INGEST_PATH = "/api/v1/ingest"
# What a directory argument expands to: result/adapter JSON and JUnit XML.
FILE_SUFFIXES = (".json", ".xml")
MAX_UPLOAD_BYTES = 64 * 1024 * 1024  # larger than any honest batch; a guard against uploading the wrong dir


def collect_files(paths: Iterable[Path]) -> list[Path]:
    """Files as given; directories expanded to their .json/.xml files, sorted, so uploads are repeatable."""
    out: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FILE_SUFFIXES))
        elif path.is_file():
            out.append(path)
        else:
            raise InputError("no such file or directory", file=str(path))
    if not out:
        raise InputError("no result files to upload")
    return out


def _document(path: Path) -> dict[str, Any]:
    """One entry of the request: parsed JSON; other text (JUnit XML) travels as a string."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", file=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    if path.suffix.lower() == ".json":
        try:
            content: Any = json.loads(text)
        except ValueError as exc:
            raise InputError(f"not JSON: {exc}", file=str(path)) from None
    else:
        content = text
    return {"name": path.name, "content": content}


def build_payload(files: Iterable[Path], fmt: str = "auto") -> dict[str, Any]:
    docs = [_document(p) for p in collect_files(files)]
    return {"format": fmt, "documents": docs}


def upload(
    server: str,
    files: list[Path],
    *,
    token: str | None,
    fmt: str = "auto",
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """POST the files in one request (the service stores them all or none) and return its JSON answer.

    Ingest is idempotent on the server, so a request that failed with a 5xx is safe to send again.
    """
    if not server.startswith(("http://", "https://")):
        raise InputError(f"--server must be an http(s) URL, got {server!r}")
    payload = build_payload(files, fmt)
    size = len(json.dumps(payload))
    if size > MAX_UPLOAD_BYTES:
        raise InputError(f"upload of {size} bytes is larger than the {MAX_UPLOAD_BYTES} byte limit; split it")
    with HttpSender(server, token=token, service="ingest server", policy=policy, sleep=sleep) as http:
        resp = http.request("POST", INGEST_PATH, json=payload)
    try:
        answer = resp.json()
    except ValueError:
        raise InfraError(f"ingest server POST {INGEST_PATH}: HTTP {resp.status_code} answer is not JSON") from None
    if not isinstance(answer, dict):
        raise InfraError(f"ingest server POST {INGEST_PATH}: expected a JSON object")
    return answer
