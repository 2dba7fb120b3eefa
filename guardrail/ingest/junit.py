"""Streaming JUnit XML reader: one :class:`TestCaseRecord` per test *attempt*.

Reads pytest (xunit1, xunit2), pytest-rerunfailures (one ``<testcase>`` per attempt), Maven Surefire
(``<flakyFailure>``, ``<flakyError>``, ``<rerunFailure>``, ``<rerunError>``), PyTorch-style ``<rerun>``
children, ``<properties>``, ``<system-out>``, setup/teardown errors and skips.

Hostile XML: parsed through defusedxml with DTDs refused outright (no JUnit writer emits one), so
entity expansion ("billion laughs") and external entities (XXE) never reach the expander; expat
refuses any undeclared ``&name;``. Elements are cleared and detached as soon as they are read, so
memory stays flat.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import sys
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import iterparse

from guardrail.errors import InputError
from guardrail.ingest.junit_model import (
    FAILED,
    Outcome,
    Phase,
    TestCaseRecord,
    TestIdentity,
    TestVerdict,
    failure_signature,
    node_id,
)
from guardrail.ingest.junit_verdicts import AttemptView, group_verdicts, single_verdict, verdict_fields

__all__ = [
    "CIIdentity",
    "TestCaseRecord",
    "TestIdentity",
    "TestVerdict",
    "ci_identity",
    "group_verdicts",
    "iter_junit",
    "iter_raw",
    "junit_batches",
    "key_hash",
    "HARDWARE_PROPERTIES",
]

# A testcase (or suite) property with one of these names sets the hardware variant.
HARDWARE_PROPERTIES = ("hardware", "hardware_variant", "device")
MESSAGE_CHARS = 1000  # what is kept of a failure message (the signature hashes up to 2000)
SYSTEM_OUT_CHARS = 2000  # the tail of <system-out> kept per attempt (where "device lost" shows up)
# pytest-rerunfailures writes one <testcase> per attempt, consecutively, even under xdist within a
# few hundred elements; an identity seen again within this window is a rerun of the earlier one.
RERUN_WINDOW = 512

_PARAMS = re.compile(r"^(?P<name>[^\[]+)\[(?P<params>.*)\]$")
_SETUP_TEARDOWN = re.compile(r"^failed on (setup|teardown) with ")
_SUREFIRE_FLAKY = {"flakyFailure": "fail", "flakyError": "error"}
_SUREFIRE_RERUN = {"rerunFailure": "fail", "rerunError": "error"}


@dataclass(frozen=True, slots=True)
class CIIdentity:
    """Which CI run a JUnit file belongs to (flags win over GitHub Actions, which wins over git)."""

    run_id: str | None
    job_attempt: int
    commit: str | None
    base_commit: str | None
    pr: int | None
    repo: str | None = None
    branch: str | None = None
    provider: str | None = None
    url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "job_attempt": self.job_attempt,
            "commit": self.commit,
            "base_commit": self.base_commit,
            "pr": self.pr,
            "repo": self.repo,
            "branch": self.branch,
            "provider": self.provider,
            "url": self.url,
        }


def ci_identity(
    *,
    run_id: str | None = None,
    attempt: int | None = None,
    commit: str | None = None,
    pr: int | None = None,
    base_commit: str | None = None,
    repo: str | None = None,
    env: dict[str, str] | None = None,
    git_dir: str | None = None,
) -> CIIdentity:
    """CI identity of the run the JUnit file came from, via :func:`guardrail.ci_env.source_from_env`."""
    from guardrail.ci_env import source_from_env  # imported here: it pulls in the pydantic models

    src = source_from_env(
        repo=repo,
        commit=commit,
        pr=pr,
        base_commit=base_commit,
        run_id=run_id,
        attempt=attempt,
        env=env,
        git_dir=git_dir,
    )
    ci = src.ci
    return CIIdentity(
        run_id=ci.run_id if ci else run_id,
        job_attempt=(ci.attempt if ci and ci.attempt else attempt) or 1,
        commit=src.commit,
        base_commit=src.base_commit,
        pr=src.pr,
        repo=src.repo,
        branch=src.branch,
        provider=ci.provider if ci else None,
        url=ci.url if ci else None,
    )


# --- identity ------------------------------------------------------------------------------------


def _split_params(name: str) -> tuple[str, str | None]:
    if "[" not in name:  # most names: no regex
        return name, None
    m = _PARAMS.match(name)
    return (m["name"], m["params"]) if m else (name, None)


def _file_and_class(classname: str | None, file: str | None) -> tuple[str | None, str | None]:
    """Split a JUnit classname into (source file, class).

    pytest writes ``tests.test_io.TestX`` (module path, then classes); xunit1 adds ``file=``. Without
    ``file=``, the leading lowercase parts are a Python module when the last one looks like a test
    module (``test_*`` / ``*_test``); anything else (``com.example.FooTest``) stays a class name.
    """
    if not classname:
        return file, None
    parts = classname.split(".")
    if file:
        module = file.removesuffix(".py").replace("/", ".").replace("\\", ".")
        if classname == module:
            return file, None
        if classname.startswith(module + "."):
            return file, classname[len(module) + 1 :]
        return file, classname
    i = 0
    while i < len(parts) and parts[i][:1].islower():
        i += 1
    mods = parts[:i]
    if mods and (mods[-1].startswith("test") or mods[-1].endswith("_test")):
        return "/".join(mods) + ".py", ".".join(parts[i:]) or None
    return None, classname


def _float(value: str | None, *, file: str, field: str) -> float:
    if value is None or value == "":
        return 0.0
    try:
        out = float(value.replace(",", ""))  # some writers emit "1,234.5"
    except ValueError:
        raise InputError(f"not a number: {value!r}", file=file, field=field) from None
    if out != out or out in (float("inf"), float("-inf")) or out < 0:
        raise InputError(f"not a finite, non-negative duration: {value!r}", file=file, field=field)
    return out


def _text(el: Element | None, limit: int, *, tail: bool = False) -> str | None:
    if el is None or not el.text:
        return None
    t = el.text.strip()
    return (t[-limit:] if tail else t[:limit]) or None


def _message(el: Element) -> str | None:
    msg = el.get("message")
    if not msg:
        # Surefire puts the trace in <stackTrace>; others in the element text: take its first line.
        body = _text(el.find("stackTrace"), MESSAGE_CHARS) or _text(el, MESSAGE_CHARS)
        msg = body.splitlines()[0] if body else None
    return msg[:MESSAGE_CHARS] if msg else None


def _failure(el: Element) -> tuple[str | None, str | None, str | None]:
    ftype = el.get("type")
    msg = _message(el)
    return ftype, msg, failure_signature(ftype, msg)


@dataclass(slots=True)
class _Suite:
    element: Element
    name: str
    hardware: str | None
    depth: int  # nesting depth of the <testsuite> element; its direct children close at this depth


# --- the reader ----------------------------------------------------------------------------------


class _Reader:
    def __init__(self, path: str, *, job_attempt: int, process_attempt: int, hardware: str | None):
        self.path = path
        self.job_attempt = job_attempt
        self.process_attempt = process_attempt
        self.hardware = hardware
        self._idcache: dict[tuple[str | None, str | None], tuple[str | None, str | None]] = {}
        # identity -> (records of its latest <testcase>, attempts so far); insertion-ordered window
        self._pending: OrderedDict[tuple, tuple[list[list[Any]], int]] = OrderedDict()

    def testcase(self, el: Element, suite: str, suite_hw: str | None) -> list[list[Any]]:
        """The raw records (see ``_RAW``) that leave the rerun window because of this <testcase>: usually zero or
        one."""
        a = el.attrib
        raw_name = a.get("name")
        if raw_name is None:
            raise InputError("<testcase> without a name attribute", file=self.path, field="testcase.name")
        classname = a.get("classname") or a.get("class")
        key = (classname, a.get("file"))
        fc = self._idcache.get(key)
        if fc is None:
            fc = self._idcache[key] = _file_and_class(classname, a.get("file"))
        name, params = _split_params(raw_name)
        duration = _float(a.get("time"), file=self.path, field=f"testcase[{raw_name}].time")
        if len(el) == 0:  # the common case, a plain pass: no child to look at
            ident = (suite, fc[0], fc[1], name, params, suite_hw or self.hardware)
            return self._through_window(
                ident,
                [[ident, "pass", duration, self.job_attempt, self.process_attempt, 1, True, "call",
                  None, None, None, "testcase", (), None]],
            )  # fmt: skip

        props: list[tuple[str, str]] = []
        main: Element | None = None  # the final outcome's element: failure / error / skipped
        flaky: list[Element] = []  # Surefire: failed attempts before the final pass
        reruns: list[Element] = []  # Surefire rerunFailure/rerunError, PyTorch <rerun>: later/earlier fails
        pytorch_reruns: list[Element] = []
        out: str | None = None
        for child in el:
            tag = child.tag
            if tag == "failure" or (tag == "error" and (main is None or main.tag != "failure")):
                main = child  # a failure beats a teardown error reported next to it
            elif tag == "skipped" and main is None:
                main = child
            elif tag in _SUREFIRE_FLAKY:
                flaky.append(child)
            elif tag in _SUREFIRE_RERUN:
                reruns.append(child)
            elif tag == "rerun":
                pytorch_reruns.append(child)
            elif tag == "properties":
                props.extend((p.get("name", ""), p.get("value", p.text or "")) for p in child)
            elif tag == "system-out":
                out = _text(child, SYSTEM_OUT_CHARS, tail=True)

        hw = next((v for k, v in props if k in HARDWARE_PROPERTIES and v), None) or suite_hw or self.hardware
        ident = (suite, fc[0], fc[1], name, params, hw)
        job, proc = self.job_attempt, self.process_attempt
        tprops = tuple(props)

        # Attempts stay plain lists (the TestCaseRecord field order) until the store or iter_junit's caller:
        # a dataclass per attempt cost more than the rest of the per-testcase work.
        def rec(outcome: Outcome, dur: float, src: str, node: Element | None) -> list[Any]:
            ftype = msg = sig = None
            phase: Phase = "call"
            if node is not None and outcome != "pass":
                ftype, msg, sig = _failure(node)
                if outcome == "skip":
                    sig = None  # a skip reason is kept as the message, but is no failure
                m = _SETUP_TEARDOWN.match(node.get("message") or "")
                if m:
                    phase = m.group(1)  # type: ignore[assignment]
            return [ident, outcome, dur, job, proc, 1, True, phase, ftype, msg, sig, src, tprops, out]

        def attempt_time(node: Element) -> float:
            return _float(node.get("time"), file=self.path, field=f"testcase[{raw_name}].{node.tag}.time")

        attempts: list[list[Any]] = []
        final_outcome: Outcome = "pass"
        if main is not None:
            final_outcome = {"failure": "fail", "error": "error", "skipped": "skip"}[main.tag]  # type: ignore[assignment]
        for node in pytorch_reruns:
            attempts.append(rec("fail", attempt_time(node), "rerun", node))
        for node in flaky:
            attempts.append(rec(_SUREFIRE_FLAKY[node.tag], attempt_time(node), node.tag, node))  # type: ignore[arg-type]
        if reruns and main is not None and final_outcome in FAILED:
            # Surefire: <failure> is the first run, each rerunFailure a later one; the last is final.
            attempts.append(rec(final_outcome, duration, "testcase", main))
            for node in reruns:
                attempts.append(rec(_SUREFIRE_RERUN[node.tag], attempt_time(node), node.tag, node))  # type: ignore[arg-type]
        else:
            attempts.append(rec(final_outcome, duration, "testcase", main))
        return self._through_window(ident, attempts)

    def _through_window(self, ident: tuple, attempts: list[list[Any]]) -> list[list[Any]]:
        out: list[list[Any]] = []
        prev = self._pending.pop(ident, None)
        done = 0
        if prev is not None:
            prev_attempts, done = prev
            # Seen again: the earlier <testcase> was rerun. pytest-rerunfailures reruns only after a
            # failure, and writes that failed attempt as a bare <testcase> -- which reads as a pass.
            last = prev_attempts[-1]
            if last[1] == "pass" and last[11] == "testcase":
                last[1], last[11] = "fail", "rerun-testcase"
            for a in prev_attempts:
                a[6] = False
            out.extend(prev_attempts)
        if done or len(attempts) > 1:
            for i, a in enumerate(attempts, start=done + 1):
                a[5] = i
        self._pending[ident] = (attempts, done + len(attempts))
        while len(self._pending) > RERUN_WINDOW:
            self._flush_one(out)
        return out

    def _flush_one(self, out: list[list[Any]]) -> None:
        _, (attempts, _) = self._pending.popitem(last=False)
        for a in attempts[:-1]:
            a[6] = False
        out.extend(attempts)  # the last one keeps final=True

    def flush(self) -> list[list[Any]]:
        out: list[list[Any]] = []
        while self._pending:
            self._flush_one(out)
        return out


def iter_junit(
    path: str | Path,
    *,
    job_attempt: int = 1,
    process_attempt: int = 1,
    hardware: str | None = None,
) -> Iterator[TestCaseRecord]:
    """Yield one record per test attempt in the JUnit XML file at ``path``, streaming.

    ``hardware`` is the default hardware variant; a ``hardware``/``device`` property on the testcase
    or its suite overrides it. Raises :class:`InputError` (naming the file and the field) for hostile,
    malformed or non-JUnit XML; records already yielded before such an error must be discarded (the
    ingest is one transaction).
    """
    last: tuple | None = None
    ident: TestIdentity | None = None
    for a in iter_raw(path, job_attempt=job_attempt, process_attempt=process_attempt, hardware=hardware):
        if a[0] is not last:  # a test's attempts share one identity
            last, ident = a[0], TestIdentity(*a[0])
        yield TestCaseRecord(ident, *a[1:])  # type: ignore[arg-type]


def iter_raw(
    path: str | Path,
    *,
    job_attempt: int = 1,
    process_attempt: int = 1,
    hardware: str | None = None,
) -> Iterator[list[Any]]:
    """:func:`iter_junit` without the dataclasses: one list per attempt in :class:`TestCaseRecord`'s field
    order, its identity a plain tuple in :class:`TestIdentity`'s field order (for the ingest's hot path)."""
    p = str(path)
    reader = _Reader(p, job_attempt=job_attempt, process_attempt=process_attempt, hardware=hardware)
    suites: list[_Suite] = []
    root: Element | None = None
    depth = 0
    try:
        it = iterparse(p, events=("start", "end"), forbid_dtd=True, forbid_entities=True, forbid_external=True)
        for event, el in it:
            tag = el.tag
            if event == "start":
                depth += 1
                if depth == 1:
                    if tag not in ("testsuites", "testsuite"):
                        raise InputError(
                            f"root element is <{tag}>, expected <testsuites> or <testsuite>", file=p, field="root"
                        )
                    root = el
                if tag == "testsuite":
                    outer = suites[-1] if suites else None
                    name = el.get("name") or (outer.name if outer else "")
                    suites.append(_Suite(el, name, outer.hardware if outer else None, depth))
                continue
            depth -= 1
            suite = suites[-1] if suites else None
            if tag == "testcase":
                yield from reader.testcase(el, suite.name if suite else "", suite.hardware if suite else None)
                el.clear()
                # detach, so that the parent keeps no 100k empty shells
                if suite is not None and depth == suite.depth:
                    suite.element.remove(el)
                elif depth == 1 and root is not None:
                    root.remove(el)  # a <testcase> straight under <testsuites>
            elif tag == "testsuite":
                suites.pop()
                el.clear()
            elif suite is not None and depth == suite.depth:
                if tag == "properties":
                    hw = next((q.get("value") for q in el if q.get("name") in HARDWARE_PROPERTIES), None)
                    suite.hardware = hw or suite.hardware
                elif tag in ("system-out", "system-err"):
                    el.clear()  # suite-level logs can be megabytes; nothing reads them
        yield from reader.flush()
    except InputError:
        raise
    except DTDForbidden:
        raise InputError(
            "XML declares a DTD (<!DOCTYPE>); refused: JUnit files have none and DTDs enable entity attacks",
            file=p,
            field="DOCTYPE",
        ) from None
    except EntitiesForbidden:
        raise InputError("XML declares entities; refused (entity expansion attack)", file=p, field="ENTITY") from None
    except ExternalReferenceForbidden:
        raise InputError("XML references an external entity; refused", file=p, field="ENTITY") from None
    except DefusedXmlException as exc:
        raise InputError(f"hostile XML refused ({type(exc).__name__})", file=p, field="xml") from None
    except ParseError as exc:
        line, col = getattr(exc, "position", (0, 0))
        why = re.sub(r": line \d+, column \d+$", "", str(exc))
        raise InputError(f"not well-formed XML ({why})", file=p, field=f"line {line}, column {col}") from None
    except FileNotFoundError:
        raise InputError("file not found", file=p) from None
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", file=p) from None


# --- the ingest's view: batches of plain tuples ----------------------------------------------------
# What guardrail.ingest.tests stores, computed here so that it can run in a process of its own (the parse and
# the database writes then use two cores; threads could not, the GIL): plain tuples pickle cheaply.
# A test row:      (key_hash, key, test_id, suite, file, classname, name, params, hardware); the n-th test row
#                   of a file is its test number n (from 0): executions and verdicts name their test by it,
#                   so that neither process keeps a dict of 100k key strings, nor pickles them again
# An execution:    (test number, job_attempt, process_attempt, inprocess_attempt, outcome, duration_s, phase,
#                   failure_type, message, signature, source, final, properties JSON, system_out of a failure)
# A verdict:       (test number, verdict, final_outcome, attempts, failed_attempts, signatures JSON, duration_s,
#                   rerun_duration_s, process_attempts)


_EMITTED = 8


def key_hash(key: str) -> str:
    """The fixed-size hash of a test key that carries the unique index of ``tests``."""
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


class _Groups:
    """A file's verdicts straight from its attempts, by test number, for the common case -- one new file, the only
    run of its commit pair -- so that the store reads nothing back. A test's group is complete at its ``final``
    attempt; complete groups are emitted every ``batch`` attempts. A test seen again after its group was
    emitted (beyond the reader's rerun window) sets ``broken``: the store then regroups from its rows."""

    def __init__(self, batch: int, flags: bytearray):
        self.batch = batch
        self.open: dict[int, list[tuple]] = {}  # a test's earlier attempts, waiting for its final one
        self.pending: dict[int, list[tuple]] = {}  # complete groups not emitted yet
        self.n_pending = 0
        self.flags = flags  # per test number; EMITTED is set once its verdict has left
        self.broken = False

    def add(self, execs: list[tuple]) -> list[tuple]:
        if self.broken:
            return []
        open_, pending = self.open, self.pending
        for e in execs:
            key = e[0]
            group = open_.pop(key, None)
            if group is None:
                if e[11]:
                    group = [e]
                else:
                    open_[key] = [e]
                    continue
            else:
                group.append(e)
                if not e[11]:
                    open_[key] = group
                    continue
            done = pending.get(key)
            if done is None:
                pending[key] = group
            else:
                done.extend(group)
            self.n_pending += len(group)
        return self._emit() if self.n_pending >= self.batch else []

    def finish(self) -> list[tuple]:
        if self.broken:
            return []
        for key, group in self.open.items():
            done = self.pending.get(key)
            if done is None:
                self.pending[key] = group
            else:
                done.extend(group)
        self.open = {}
        return self._emit()

    def _emit(self) -> list[tuple]:
        groups, self.pending, self.n_pending = self.pending, {}, 0
        rows = []
        flags = self.flags
        for key, g in groups.items():
            if flags[key] & _EMITTED:
                self.broken = True
                return []
            flags[key] |= _EMITTED
            if len(g) == 1:
                e = g[0]
                v = single_verdict(e[4], e[5], e[9], e[6])
            else:
                v = verdict_fields([AttemptView(e[4], e[5], e[1], e[2], e[3], e[6], e[9]) for e in g])
            sigs = v[4]
            rows.append((key, v[0], v[1], v[2], v[3], json.dumps(list(sigs)) if sigs else "[]", v[5], v[6], v[8]))
        return rows


def junit_batches(
    path: str | Path,
    *,
    job_attempt: int = 1,
    hardware: str | None = None,
    batch: int = 5000,
    verdicts: bool = True,
) -> Iterator[tuple]:
    """One JUnit file as the store wants it, streaming: ``("rows", tests, executions, verdicts)`` messages
    (each about ``batch`` executions; a test's row comes with or before its first execution, a verdict after
    its test's last), then ``("done", counts, suites, verdicts_complete)``. The tuples are described above.

    ``counts`` are the file's summary by test (passed / failed / flaky / skipped); ``verdicts_complete`` is
    false when ``verdicts`` was not asked for or a test's attempts were too far apart to group here.
    The ``<system-out>`` tail is kept for failed attempts only (where "device lost" shows up): in a realistic
    50 MB file half the passing cases carry a log, 30 MB the store would never show.
    Raises :class:`InputError` like :func:`iter_junit`.
    """
    numbers: dict[str, int] = {}  # test key -> test number
    bits = bytearray()  # per test number: 1 an attempt passed, 2 one failed, 4 skipped (and _Groups' flag)
    suites: set[str] = set()
    groups = _Groups(batch, bits) if verdicts else None
    tests: list[tuple] = []
    execs: list[tuple] = []
    last: tuple | None = None
    n = 0
    dumps = json.dumps
    for a in iter_raw(path, job_attempt=job_attempt, hardware=hardware):
        ident = a[0]
        if ident is not last:  # a test's attempts share one identity tuple
            last = ident
            suite, file, cls, name, params, hw = ident
            suites.add(suite)
            tid = node_id(file, cls, name, params)
            key = f"{tid}@{hw}" if hw else tid
            n = numbers.get(key, -1)
            if n < 0:
                n = numbers[key] = len(numbers)
                bits.append(0)
                tests.append((key_hash(key), key, tid, suite, file, cls, name, params, hw))
        outcome = a[1]
        failed = outcome in FAILED
        bits[n] |= 4 if outcome == "skip" else 2 if failed else 1
        execs.append(
            (n, a[3], a[4], a[5], outcome, a[2], a[7], a[8], a[9], a[10], a[11], a[6],
             dumps(dict(a[12])) if a[12] else None, a[13] if failed else None)
        )  # fmt: skip
        if len(execs) >= batch:
            yield ("rows", tests, execs, groups.add(execs) if groups else [])
            tests, execs = [], []
    if tests or execs:
        yield ("rows", tests, execs, groups.add(execs) if groups else [])
    if groups is not None:
        rest = groups.finish()
        if rest:
            yield ("rows", [], [], rest)
    counts = {"passed": 0, "failed": 0, "flaky": 0, "skipped": 0}
    for b in bits:
        ran = b & 3
        counts["flaky" if ran == 3 else "failed" if ran == 2 else "passed" if ran == 1 else "skipped"] += 1
    yield ("done", counts, sorted(suites), groups is not None and not groups.broken)


def _child_main() -> None:
    """The reader process of a large file (``guardrail.ingest.tests``): ``junit_batches`` with the JSON
    arguments in argv[1], each message a length-prefixed pickle on stdout; bad input becomes an ``("error",
    message, file, field)`` message. Anything else is a crash: traceback on stderr, non-zero exit."""
    path, job_attempt, hardware, batch, verdicts = json.loads(sys.argv[1])
    out = sys.stdout.buffer

    def send(msg: tuple) -> None:  # a frame: 8-byte length, then the pickle
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        out.write(len(data).to_bytes(8, "little"))
        out.write(data)
        out.flush()  # the parent starts writing as soon as the first batch is parsed

    try:
        for msg in junit_batches(path, job_attempt=job_attempt, hardware=hardware, batch=batch, verdicts=verdicts):
            send(msg)
    except InputError as exc:
        send(("error", exc.detail, exc.file, exc.field))
