"""Ingest: read files, validate ALL of them, then store them in ONE transaction.

Re-ingesting what is already stored is a no-op that says so: a result is identified by its run's identity,
its workload and a hash of its content.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from guardrail.errors import InputError
from guardrail.ingest.documents import Document, IngestReport, content_hash

PERF_FORMATS = ("auto", "result", "vllm-omni-diffusion", "vllm-bench", "tts-bench", "pytest-benchmark")


def expand_paths(paths: Iterable[str | Path], suffixes: tuple[str, ...] = (".json",)) -> list[Path]:
    """Files as given, and every file with a matching suffix under a directory, in a stable order."""
    return [p for p, _ in _expand(paths, suffixes)]


def _expand(paths: Iterable[str | Path], suffixes: tuple[str, ...]) -> list[tuple[Path, bool]]:
    """(file, named explicitly?) pairs: a file found in a directory may be something else and is then ignored."""
    out: list[tuple[Path, bool]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes)
            if not found:
                raise InputError(f"no {'/'.join(suffixes)} files in this directory", file=str(p))
            out.extend((f, False) for f in found)
        elif p.is_file():
            out.append((p, True))
        else:
            raise InputError("no such file or directory", file=str(p))
    return out


def _read_json(path: Path) -> Any:
    from guardrail.schema import MAX_RESULT_BYTES

    try:
        size = path.stat().st_size
        if size > MAX_RESULT_BYTES:
            raise InputError(
                f"file is {size / 2**20:.0f} MiB, over the {MAX_RESULT_BYTES / 2**20:.0f} MiB limit for one file",
                file=str(path),
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", file=str(path)) from None
    from guardrail.schema import check_document, loads

    data = loads(raw, file=str(path))
    problem = check_document(data)
    if problem is not None:
        raise InputError(problem[1], file=str(path), field=problem[0])
    return data


def load_documents(
    paths: Sequence[Path | tuple[Path, bool]],
    fmt: str = "auto",
    defaults: Any = None,
    ignored: list[dict[str, Any]] | None = None,
) -> list[Document]:
    """Parse and validate every file; raises InputError on the first bad one (nothing is written).

    A file found inside a directory that is not of the format (of any known format, with `auto`) is ignored
    and listed in `ignored`; a file named explicitly must be of it.
    """
    from guardrail.schema import parse_result

    if fmt not in PERF_FORMATS:
        raise InputError(f"unknown format {fmt!r}; one of {', '.join(PERF_FORMATS)} or junit", field="--format")
    docs: list[Document] = []
    for item in paths:
        path, explicit = item if isinstance(item, tuple) else (item, True)
        data = _read_json(path)
        if fmt == "auto":
            kind = _detect(path, data, required=explicit)
        else:
            kind = fmt if explicit or _is_format(path, data, fmt) else None
        if kind is None:
            if ignored is not None:
                what = "a result file of any known format" if fmt == "auto" else f"a {fmt} file"
                ignored.append({"file": str(path), "reason": f"not {what}"})
            continue
        if kind == "result":
            results = [parse_result(data, file=str(path))]
        else:
            from guardrail import adapters

            results = adapters.adapt(path, kind, data, defaults=defaults or adapters.AdaptDefaults())
        docs.extend(Document(str(path), kind, r, content_hash(r)) for r in results)
    return docs


def _detect(path: Path, data: Any, *, required: bool = True) -> str | None:
    from guardrail.schema import RESULT_SCHEMA, parse_result

    if isinstance(data, dict) and "schema" in data:
        if data["schema"] == RESULT_SCHEMA:
            return "result"
        parse_result(data, file=str(path))  # raises: unknown schema version, naming the field
    from guardrail import adapters

    kind = adapters.detect_format(path, data)
    if kind is None and required:
        raise InputError(
            "format not recognised; pass --format (result, vllm-omni-diffusion, vllm-bench, tts-bench, "
            "pytest-benchmark, junit)",
            file=str(path),
        )
    return kind


def _is_format(path: Path, data: Any, fmt: str) -> bool:
    from guardrail.schema import RESULT_SCHEMA

    if fmt == "result":
        return isinstance(data, dict) and data.get("schema") == RESULT_SCHEMA
    from guardrail import adapters

    return adapters.is_format(path, data, fmt)


def ingest(db_url: str, paths: Sequence[str | Path], fmt: str = "auto", defaults: Any = None) -> IngestReport:
    from guardrail.ingest.result_writer import store_documents
    from guardrail.store.db import session_scope

    ignored: list[dict[str, Any]] = []
    docs = load_documents(_expand(paths, (".json",)), fmt, defaults, ignored)
    with session_scope(db_url, write=True) as session:
        report = store_documents(session, docs)
    report.ignored = ignored
    return report
