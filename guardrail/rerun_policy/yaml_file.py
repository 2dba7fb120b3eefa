"""Reading the rerun policy from its YAML file (``baselines/rerun-policy.yaml`` by default)."""

from __future__ import annotations

from pathlib import Path

import yaml

from guardrail.errors import InputError
from guardrail.rerun_policy import RerunPolicy, rerun_policy_from_mapping

DEFAULT_POLICY_PATH = Path(__file__).resolve().parents[2] / "baselines" / "rerun-policy.yaml"


def load_rerun_policy(path: str | Path | None = None) -> RerunPolicy:
    """Read the YAML policy; missing keys keep their defaults, unknown keys or bad values are an error."""
    p = Path(path) if path is not None else DEFAULT_POLICY_PATH
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except OSError as exc:
        raise InputError(f"cannot read rerun policy ({exc.strerror})", file=str(p)) from None
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML ({str(exc).splitlines()[0]})", file=str(p)) from None
    return rerun_policy_from_mapping(data, file=str(p))
