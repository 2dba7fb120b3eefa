"""The guardrail's own YAML files (lane policies, rules, workloads, matrices): read, then validated into their model.

One place for the two failures every such file can have, each one InputError naming the file (and the field):
it cannot be read or is not YAML; it does not fit its model. The pure layers never import this (no YAML there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from guardrail.errors import InputError
from guardrail.schema import json_path

_M = TypeVar("_M", bound=BaseModel)


def read_yaml(path: Path, what: str) -> Any:
    """The YAML document in `path` (the guardrail's own files: policies, rules, workloads, matrices); an unreadable
    file or bad YAML is one InputError naming the file."""
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read the {what} ({exc.strerror or exc})", file=str(path)) from None
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML ({str(exc).splitlines()[0]})", file=str(path)) from None


def validated(model: type[_M], data: Any, path: Path) -> _M:
    """`data` as `model`; the first validation problem is one InputError naming the file and its JSON path."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        msg = err["msg"].removeprefix("Value error, ")
        raise InputError(msg, file=str(path), field=json_path(tuple(err["loc"]))) from None
