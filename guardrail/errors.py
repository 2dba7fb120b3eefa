"""Errors that map onto the CLI's exit codes (DESIGN.md): 2 bad input or usage, 3 infra failure, 4 internal
error; the web answers them with 422, 404 and 503."""

from __future__ import annotations

# Any uncaught exception (a bug in the guardrail): neither a verdict (0/1) nor bad input (2) nor infra (3).
INTERNAL_ERROR_EXIT_CODE = 4


class GuardrailError(Exception):
    """Base class: the message is one line a tired engineer can act on."""

    exit_code = 2


class InputError(GuardrailError):
    """Bad input: names the file and the field. Exit code 2; nothing has been written."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None):
        self.file = file
        self.field = field
        self.detail = message
        parts = [p for p in (file, field) if p]
        super().__init__(": ".join([*parts, message]))


class NotFound(GuardrailError, LookupError):
    """The thing asked for (a run, a series, an alert, a test) is not in the store. Exit code 2; HTTP 404."""

    exit_code = 2


class InfraError(GuardrailError):
    """The infrastructure failed (database unreachable, device lost, runner crashed). Exit code 3."""

    exit_code = 3
