"""Reading the rerun policy from its YAML file (``baselines/rerun-policy.yaml`` by default)."""

from __future__ import annotations

from pathlib import Path

from guardrail.rerun_policy import RerunPolicy, rerun_policy_from_mapping
from guardrail.yaml_files import read_yaml

DEFAULT_POLICY_PATH = Path(__file__).resolve().parents[2] / "baselines" / "rerun-policy.yaml"


def load_rerun_policy(path: str | Path | None = None) -> RerunPolicy:
    """Read the YAML policy; missing keys keep their defaults, unknown keys or bad values are an error."""
    p = Path(path) if path is not None else DEFAULT_POLICY_PATH
    return rerun_policy_from_mapping(read_yaml(p, "rerun policy") or {}, file=str(p))
