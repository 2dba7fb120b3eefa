"""Client for a running service: `guardrail ingest --server URL` posts result files to its ingest API, and
`guardrail plan-repeats --server URL` reads its repeat plan."""

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
    return [p for p, _ in _collect(paths)]


def _collect(paths: Iterable[Path]) -> list[tuple[Path, bool]]:
    """(file, named explicitly?) pairs, as the local ingest expands them."""
    out: list[tuple[Path, bool]] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FILE_SUFFIXES)
            out.extend((p, False) for p in found)
        elif path.is_file():
            out.append((path, True))
        else:
            raise InputError("no such file or directory", file=str(path))
    if not out:
        raise InputError("no result files to upload")
    return out


def _is_known(path: Path, content: Any, fmt: str) -> bool:
    """Whether a file found in a directory is one the service would read: the local ingest's rule, so that a
    stray JSON file (a config, a log) is ignored the same way locally and through --server."""
    from guardrail import adapters
    from guardrail.schema import RESULT_SCHEMA

    if isinstance(content, dict) and "schema" in content:
        return fmt in ("auto", "result") or content.get("schema") != RESULT_SCHEMA
    if fmt == "result":
        return False
    kind = adapters.detect_format(path, content)
    return kind is not None and fmt in ("auto", kind)


def clean_token(token: str | None) -> str | None:
    """The token as pasted: surrounding whitespace (a trailing newline from a secrets file) is dropped; one
    with whitespace or control characters inside is refused, since no header can carry it."""
    if token is None:
        return None
    token = token.strip()
    if not token:
        return None
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in token):
        raise InputError(
            "contains whitespace or a control character inside; set it to the token alone", field="$GUARDRAIL_TOKEN"
        )
    return token


def _document(path: Path) -> dict[str, Any]:
    """One entry of the request: parsed JSON; other text (JUnit XML) travels as a string."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", file=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    if path.suffix.lower() == ".json":
        from guardrail.schema import loads

        content: Any = loads(text, file=str(path))  # bad or too deeply nested JSON is one line, before sending
    else:
        content = text
    return {"name": path.name, "content": content}


def build_payload(
    files: Iterable[Path], fmt: str = "auto", ignored: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The request body. Files found in a directory that are of no known format are left out and listed in
    `ignored` (named explicitly, they are sent, and the service says what is wrong with them)."""
    docs = []
    for path, explicit in _collect(files):
        doc = _document(path)
        if not explicit and path.suffix.lower() == ".json" and not _is_known(path, doc["content"], fmt):
            if ignored is not None:
                what = "a result file of any known format" if fmt == "auto" else f"a {fmt} file"
                ignored.append({"file": str(path), "reason": f"not {what}"})
            continue
        docs.append(doc)
    if not docs:
        raise InputError("no result files to upload")
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
    token = clean_token(token)
    ignored: list[dict[str, Any]] = []
    payload = build_payload(files, fmt, ignored)
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
    if ignored:
        answer = {**answer, "ignored": [*answer.get("ignored", []), *ignored]}
    return answer


REPEAT_PLAN_PATH = "/api/v1/repeat-plan"


def fetch_repeat_plan(
    server: str,
    *,
    token: str | None,
    lane: str,
    hardware: str | None = None,
    workloads: list[str] | None = None,
    min_repeats: int = 2,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """The service's `guardrail.repeat_plan/v1` for LANE (what `guardrail plan-repeats` computes from a store)."""
    if not server.startswith(("http://", "https://")):
        raise InputError(f"--server must be an http(s) URL, got {server!r}")
    params: dict[str, Any] = {"lane": lane, "min_repeats": min_repeats}
    if hardware:
        params["hardware"] = hardware
    if workloads:
        params["workload"] = workloads
    with HttpSender(server, token=clean_token(token), service="guardrail server", policy=policy, sleep=sleep) as http:
        resp = http.request("GET", REPEAT_PLAN_PATH, params=params)
    try:
        answer = resp.json()
    except ValueError:
        raise InfraError(
            f"guardrail server GET {REPEAT_PLAN_PATH}: HTTP {resp.status_code} answer is not JSON"
        ) from None
    if not isinstance(answer, dict) or not isinstance(answer.get("workloads"), list):
        raise InfraError(f"guardrail server GET {REPEAT_PLAN_PATH}: not a repeat plan")
    return answer
