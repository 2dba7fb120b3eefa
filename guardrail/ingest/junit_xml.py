"""Streaming JUnit XML reader: one :class:`CaseRecord` per test *attempt*.

Reads pytest (xunit1, xunit2), pytest-rerunfailures (one ``<testcase>`` per attempt), Maven Surefire
(``<flakyFailure>``, ``<flakyError>``, ``<rerunFailure>``, ``<rerunError>``), PyTorch-style ``<rerun>``
children, ``<properties>``, ``<system-out>``, setup/teardown errors and skips.

Hostile XML: parsed through defusedxml with DTDs refused outright (no JUnit writer emits one), so
entity expansion ("billion laughs") and external entities (XXE) never reach the expander; expat
refuses any undeclared ``&name;``. Elements are cleared and detached as soon as they are read, so
memory stays flat.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import iterparse

from guardrail.analysis.junit_model import FAILED, CaseIdentity, CaseRecord, Outcome, Phase, failure_signature
from guardrail.errors import InputError
from guardrail.ingest.junit_reruns import RerunWindow

# A testcase (or suite) property with one of these names sets the hardware variant.
HARDWARE_PROPERTIES = ("hardware", "hardware_variant", "device")
MESSAGE_CHARS = 1000  # what is kept of a failure message (the signature hashes up to 2000)
SYSTEM_OUT_CHARS = 2000  # the tail of <system-out> kept per attempt (where "device lost" shows up)
HARDWARE_CHARS = 200  # the hardware column (guardrail/store/junit_models.py): checked here, the same on both databases
# A duration longer than this is no test's: GitHub's self-hosted jobs stop after 5 days. Anything above it (1e300,
# a timestamp in a time field) would only poison sums of CI minutes.
MAX_DURATION_S = 7 * 24 * 3600.0

_PARAMS = re.compile(r"^(?P<name>[^\[]+)\[(?P<params>.*)\]$")
_SETUP_TEARDOWN = re.compile(r"^failed on (setup|teardown) with ")
_SUREFIRE_FLAKY: dict[str, Outcome] = {"flakyFailure": "fail", "flakyError": "error"}
_SUREFIRE_RERUN: dict[str, Outcome] = {"rerunFailure": "fail", "rerunError": "error"}
_FINAL: dict[str, Outcome] = {"failure": "fail", "error": "error", "skipped": "skip"}  # the final outcome's tag
# Control characters (Unicode Cc) in a name: no JUnit writer emits them raw (pytest escapes them in ids), and a
# "\r" in a test name would rewrite the terminal line that prints it.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _printable(value: str | None, *, file: str, field: str) -> None:
    if value and _CONTROL.search(value):
        raise InputError(f"contains a control character ({value[:80]!r})", file=file, field=field)


def _hardware(value: str | None, *, file: str, field: str) -> str | None:
    _printable(value, file=file, field=field)
    if value and len(value) > HARDWARE_CHARS:
        raise InputError(f"longer than {HARDWARE_CHARS} characters ({len(value)})", file=file, field=field)
    return value


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
        if "_" in value:  # float() takes "1_000"; no writer means that
            raise ValueError
        out = float(value.replace(",", ""))  # some writers emit "1,234.5"
    except ValueError:
        raise InputError(f"not a number: {value[:80]!r}", file=file, field=field) from None
    if out != out or out in (float("inf"), float("-inf")) or out < 0:
        raise InputError(f"not a finite, non-negative duration: {value[:80]!r}", file=file, field=field)
    if out > MAX_DURATION_S:
        raise InputError(f"a duration of {value[:80]} s is longer than any CI job (7 days)", file=file, field=field)
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
        self.hardware = _hardware(hardware, file=path, field="--hardware")
        self._idcache: dict[tuple[str | None, str | None], tuple[str | None, str | None]] = {}
        self.window = RerunWindow()

    def testcase(self, el: Element, suite: str, suite_hw: str | None) -> list[list[Any]]:
        """The raw records (see :func:`iter_raw`) that leave the rerun window because of this <testcase>: usually
        none or one test's."""
        a = el.attrib
        raw_name = a.get("name")
        if not raw_name:
            what = "without a name attribute" if raw_name is None else "with an empty name"
            raise InputError(f"<testcase> {what}", file=self.path, field="testcase.name")
        if _CONTROL.search(raw_name):
            _printable(raw_name, file=self.path, field="testcase.name")
        classname = a.get("classname") or a.get("class")
        key = (classname, a.get("file"))
        fc = self._idcache.get(key)
        if fc is None:
            _printable(classname, file=self.path, field=f"testcase[{raw_name}].classname")
            _printable(a.get("file"), file=self.path, field=f"testcase[{raw_name}].file")
            fc = self._idcache[key] = _file_and_class(classname, a.get("file"))
        name, params = _split_params(raw_name)
        duration = _float(a.get("time"), file=self.path, field=f"testcase[{raw_name}].time")
        if len(el) == 0:  # the common case, a plain pass: no child to look at
            ident = (suite, fc[0], fc[1], name, params, suite_hw or self.hardware)
            return self.window.add(
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

        hw = next((v for k, v in props if k in HARDWARE_PROPERTIES and v), None)
        hw_field = f"testcase[{raw_name}].properties.hardware"
        hw = _hardware(hw, file=self.path, field=hw_field) or suite_hw or self.hardware
        ident = (suite, fc[0], fc[1], name, params, hw)
        job, proc = self.job_attempt, self.process_attempt
        tprops = tuple(props)

        # Attempts stay plain lists (the CaseRecord field order) until the store or iter_junit's caller:
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
                    phase = cast(Phase, m.group(1))
            return [ident, outcome, dur, job, proc, 1, True, phase, ftype, msg, sig, src, tprops, out]

        def attempt_time(node: Element) -> float:
            return _float(node.get("time"), file=self.path, field=f"testcase[{raw_name}].{node.tag}.time")

        attempts: list[list[Any]] = []
        final_outcome: Outcome = "pass"
        if main is not None:
            final_outcome = _FINAL[main.tag]
        for node in pytorch_reruns:
            attempts.append(rec("fail", attempt_time(node), "rerun", node))
        for node in flaky:
            attempts.append(rec(_SUREFIRE_FLAKY[node.tag], attempt_time(node), node.tag, node))
        if reruns and main is not None and final_outcome in FAILED:
            # Surefire: <failure> is the first run, each rerunFailure a later one; the last is final.
            attempts.append(rec(final_outcome, duration, "testcase", main))
            for node in reruns:
                attempts.append(rec(_SUREFIRE_RERUN[node.tag], attempt_time(node), node.tag, node))
        else:
            attempts.append(rec(final_outcome, duration, "testcase", main))
        return self.window.add(ident, attempts)


def iter_junit(
    path: str | Path,
    *,
    job_attempt: int = 1,
    process_attempt: int = 1,
    hardware: str | None = None,
) -> Iterator[CaseRecord]:
    """Yield one record per test attempt in the JUnit XML file at ``path``, streaming.

    ``hardware`` is the default hardware variant; a ``hardware``/``device`` property on the testcase
    or its suite overrides it. Raises :class:`InputError` (naming the file and the field) for hostile,
    malformed or non-JUnit XML; records already yielded before such an error must be discarded (the
    ingest is one transaction).
    """
    last: tuple | None = None
    ident = CaseIdentity("", None, None, "")
    for a in iter_raw(path, job_attempt=job_attempt, process_attempt=process_attempt, hardware=hardware):
        if a[0] is not last:  # a test's attempts share one identity
            last, ident = a[0], CaseIdentity(*a[0])
        yield CaseRecord(ident, *a[1:])


def iter_raw(
    path: str | Path,
    *,
    job_attempt: int = 1,
    process_attempt: int = 1,
    hardware: str | None = None,
) -> Iterator[list[Any]]:
    """:func:`iter_junit` without the dataclasses: one list per attempt in :class:`CaseRecord`'s field
    order, its identity a plain tuple in :class:`CaseIdentity`'s field order (for the ingest's hot path)."""
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
                    _printable(name, file=p, field="testsuite.name")
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
                    hw = _hardware(hw, file=p, field=f"testsuite[{suite.name}].properties.hardware")
                    suite.hardware = hw or suite.hardware
                elif tag in ("system-out", "system-err"):
                    el.clear()  # suite-level logs can be megabytes; nothing reads them
        yield from reader.window.flush()
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
    except LookupError as exc:  # <?xml encoding="..."?> naming a codec Python does not have
        if "encoding" not in str(exc):
            raise
        raise InputError(f"unsupported XML encoding ({exc})", file=p, field="encoding") from None
    except FileNotFoundError:
        raise InputError("file not found", file=p) from None
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", file=p) from None
