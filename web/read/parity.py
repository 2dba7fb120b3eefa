"""GPU↔NPU parity as the dashboard and the API show it: the document `guardrail parity` prints
(guardrail.parity/v1, from :func:`guardrail.parity.parity_doc`) over the newest ``days`` days, and the hardware
a page can choose from (a CUDA part as the default reference, an Ascend part as the default target)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from guardrail import clock
from guardrail.adapters.hardware import device_type_of
from guardrail.parity import hardware_with_tests, parity_doc

DAYS = 30


def choices(session: Session) -> dict[str, Any]:
    """The stored hardware with JUnit results, and the default pair: the first GPU against the first NPU."""
    hw = hardware_with_tests(session)
    gpu = next((h for h in hw if device_type_of(h) == "cuda"), None)
    npu = next((h for h in hw if device_type_of(h) == "npu"), None)
    return {"hardware": hw, "reference": gpu, "target": npu}


def parity(
    session: Session,
    *,
    reference: str,
    target: str,
    lanes: Sequence[str] = (),
    days: int = DAYS,
    at: datetime | None = None,
) -> dict[str, Any]:
    now = at or clock.now()
    return parity_doc(
        session, reference=reference, target=target, now=now, lanes=lanes, since=now - timedelta(days=days)
    )
