"""Environment or code: the class of a failed workload from rules kept in YAML (``baselines/failure-rules.yaml``).

A rule matches a failure's error kind, or a regex on its message, or both; the first that matches names its class
(`environment`: the node, image or network — rerun elsewhere; `code`: the code under test — a person looks) and
why. No rule: `unknown`. Rules are data, like vLLM-Ascend's CI failure rules, so adding one needs no code.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from guardrail.yaml_files import read_yaml, validated

DEFAULT_RULES_PATH = Path(__file__).resolve().parents[2] / "baselines" / "failure-rules.yaml"
FailureClass = Literal["environment", "code", "unknown"]


class FailureRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    failure_class: Literal["environment", "code"] = Field(alias="class")
    kind: str | None = None
    message: str | None = None
    why: str = ""

    @field_validator("message")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a regex ({exc})") from None
        return v

    def matches(self, kind: str | None, message: str | None) -> bool:
        if self.kind is None and self.message is None:
            return False
        if self.kind is not None and self.kind != kind:
            return False
        return self.message is None or re.search(self.message, message or "", re.I) is not None


class FailureRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[FailureRule] = Field(default_factory=list)

    def classify(self, kind: str | None, message: str | None) -> dict[str, str]:
        """{"class", "rule", "why"} of a failure; class `unknown` (rule "") when no rule matches."""
        for r in self.rules:
            if r.matches(kind, message):
                return {"class": r.failure_class, "rule": r.name, "why": r.why}
        return {"class": "unknown", "rule": "", "why": "no failure rule matches it"}


@functools.cache
def load_failure_rules(path: str | Path | None = None) -> FailureRules:
    p = Path(path) if path is not None else DEFAULT_RULES_PATH
    return validated(FailureRules, read_yaml(p, "failure rules") or {}, p)
