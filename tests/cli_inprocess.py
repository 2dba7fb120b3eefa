"""The real `guardrail` entry point run in-process, its error handling and exit codes included."""

from __future__ import annotations

import sys


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run `guardrail ARGS...` through guardrail.cli.main; return (exit code, stdout, stderr)."""
    from guardrail.cli import main

    old, sys.argv = sys.argv, ["guardrail", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err
