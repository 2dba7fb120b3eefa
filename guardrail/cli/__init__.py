"""`guardrail` command line. Each command lives in its own module and registers itself on `app`."""

from __future__ import annotations

import sys

from rich.console import Console

from guardrail.cli.commands import app
from guardrail.errors import GuardrailError

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except GuardrailError as exc:
        Console(stderr=True, highlight=False, soft_wrap=True).print(f"error: {exc}", markup=False)
        sys.exit(exc.exit_code)
