"""The JUnit reader process: a large file is parsed in a child process while the ingest writes to the database.

Both sides live here: :func:`child_main` runs in the child and writes :func:`junit_batches`' messages to its
stdout as length-prefixed pickles; :class:`ParsedFile` starts it (or, for a small file, parses in this process)
and yields the same messages either way.
"""

from __future__ import annotations

import json
import os
import pickle
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import guardrail
from guardrail.errors import InfraError, InputError
from guardrail.ingest.junit_batches import junit_batches

CHILD_CODE = "from guardrail.ingest.junit_process import child_main; child_main()"  # what `python -c` runs
_AHEAD = 4  # pickled batches (~2 MB each) the reader process may be ahead of the writes


def child_main() -> None:
    """The reader process of a large file (run as :data:`CHILD_CODE`): ``junit_batches`` with the JSON
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


class ParsedFile:
    """One file's :func:`junit_batches` messages. A large file is parsed in a child process that pickles them
    to a pipe, so that parsing and the database writes overlap on two cores; a small one is parsed here. A
    thread moves the child's frames from the pipe into a queue of up to ``_AHEAD`` (as bytes: compact), so that
    the child keeps parsing while this process waits on the database -- the 64 KiB pipe alone made the two
    take turns. Bad input in the child arrives as an ``InputError``; a child that dies without finishing
    raises :class:`InfraError` -- either way inside the ingest's transaction, so nothing is written."""

    def __init__(
        self, path: Path, *, job_attempt: int, hardware: str | None, verdicts: bool, batch: int, child_min_bytes: int
    ):
        self.path = path
        self.job_attempt, self.hardware, self.verdicts, self.batch = job_attempt, hardware, verdicts, batch
        self.proc: subprocess.Popen | None = None
        try:
            big = path.stat().st_size >= child_min_bytes
        except OSError:
            big = False  # the parse in this process names the problem
        if big:
            self.stderr = tempfile.TemporaryFile()
            root = str(Path(guardrail.__file__).resolve().parent.parent)
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
            arg = json.dumps([str(path), job_attempt, hardware, batch, verdicts])
            self.proc = subprocess.Popen(
                [sys.executable, "-c", CHILD_CODE, arg],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr, env=env,
            )  # fmt: skip
            self.frames: queue.Queue[bytes | None] = queue.Queue(maxsize=_AHEAD)
            self.pump = threading.Thread(target=self._pump, name="junit-reader-pipe", daemon=True)
            self.pump.start()

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        f = self.proc.stdout
        try:
            while True:
                head = f.read(8)  # a frame: its length, then one pickled message
                if len(head) < 8:
                    break
                n = int.from_bytes(head, "little")
                data = f.read(n)
                if len(data) < n:
                    break
                self.frames.put(data)
        except (OSError, ValueError):
            pass
        self.frames.put(None)  # the end of the pipe: after "done", or a crash

    def messages(self) -> Iterator[tuple]:
        if self.proc is None:
            yield from junit_batches(
                self.path,
                job_attempt=self.job_attempt,
                hardware=self.hardware,
                batch=self.batch,
                verdicts=self.verdicts,
            )
            return
        while True:
            data = self.frames.get()
            if data is None:
                self._died()
            msg = pickle.loads(data)
            if msg[0] == "error":
                raise InputError(msg[1], file=msg[2], field=msg[3])
            yield msg
            if msg[0] == "done":
                return

    def _died(self) -> NoReturn:
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rc = None
        self.stderr.seek(0, os.SEEK_END)
        self.stderr.seek(max(0, self.stderr.tell() - 4000))
        lines = [ln for ln in self.stderr.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        why = f": {lines[-1].strip()}" if lines else ""
        raise InfraError(
            f"{self.path}: the JUnit reader process ended before the end of the file (exit code {rc}){why}; "
            "nothing was stored"
        )

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()  # the ingest failed while the child was still reading
        self.proc.wait()
        while self.pump.is_alive():  # let the thread see the end of the pipe: make room for its last put
            try:
                self.frames.get(timeout=0.1)
            except queue.Empty:
                pass
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.stderr.close()
        self.proc = None
