"""A measured child process: started in its own session, its stderr copied to a log with the `progress: ` lines
handed on, waited for up to a timeout and then stopped with its whole process group."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

PROGRESS = "progress: "


@dataclass(frozen=True)
class Finished:
    returncode: int
    timed_out: bool
    wall_s: float


def run_logged(
    cmd: Sequence[str],
    log: Path,
    *,
    timeout_s: float,
    on_line: Callable[[str], None] | None = None,
    progress_anywhere: bool = False,
    term_grace_s: float | None = None,
    after: Callable[[], None] | None = None,
) -> Finished:
    """Run `cmd` with stdout and stderr in `log`; each stderr line holding a progress message goes to `on_line`
    (at the line's start, or anywhere with `progress_anywhere`: a launcher prefixes its ranks' lines). Past
    `timeout_s` the process group gets SIGTERM and `term_grace_s` to stop (None: SIGKILL at once). `after` runs
    once the process has ended, before the log is closed (cleaning up what it left behind)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    timed_out = False
    with open(log, "w") as logf:
        proc = subprocess.Popen(
            list(cmd), stdout=logf, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
        )

        def pump() -> None:
            assert proc.stderr is not None
            for raw in proc.stderr:
                logf.write(raw)
                logf.flush()
                at = raw.find(PROGRESS) if progress_anywhere else (0 if raw.startswith(PROGRESS) else -1)
                if on_line is not None and at >= 0:
                    on_line(raw[at + len(PROGRESS) :].strip())

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop(proc, term_grace_s)
        if after is not None:
            after()
        reader.join(timeout=5)
    return Finished(proc.returncode, timed_out, time.perf_counter() - t0)


def _stop(proc: subprocess.Popen, term_grace_s: float | None) -> None:
    """The child's own process group only: SIGTERM with a grace period, else (or then) SIGKILL."""
    if term_grace_s is not None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=term_grace_s)
            return
        except subprocess.TimeoutExpired:
            pass
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
