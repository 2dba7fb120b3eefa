"""Time spent in the collectives of a parallel job: diffusers' blocking collective helpers, timed per call.

Diffusers' context parallelism (Ulysses, ring) moves its tensors through two module-level helpers of
`diffusers.models.attention_dispatch`: `_all_to_all_single` (an all-to-all that waits for its result) and
`_wait_tensor` (the wait of an asynchronous all-gather or all-to-all). Wrapping exactly those two measures
*exposed* communication: the transfer plus the wait for the slowest peer, as the rank's own timeline sees it,
with the device's events (runners.device), so on CUDA/NPU it is the time the compute stream waits. Transfers
that overlap compute are not counted, which is what a step pays for. cache-dit's tensor parallelism
communicates inside DTensor: those collectives are not timed, and no comm metric is recorded rather than a
partial one (docs/runners.md, "Parallel").

Installed only by the parallel launcher's rank process (runners.launch); a single-device run never sees it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

# Names in diffusers.models.attention_dispatch that block on a collective (diffusers 0.42).
HELPERS = ("_all_to_all_single", "_wait_tensor")

Timer = Callable[[Any, Any], None]  # (mark before, mark after)
_state: dict[str, Any] = {"timer": None, "depth": 0, "installed": False}


def attach(timer: Timer | None) -> None:
    """Where the next collective's marks go (the engine's probe), or None to drop them."""
    _state["timer"] = timer


def installed() -> bool:
    return bool(_state["installed"])


def install(event: Callable[[], Any]) -> list[str]:
    """Wrap diffusers' blocking collective helpers; `event()` makes a device mark. Returns the names wrapped
    (those this diffusers has). A call inside a wrapped call (`_all_to_all_single` waits through `_wait_tensor`)
    is counted once, by the outer one."""
    from diffusers.models import attention_dispatch as ad

    wrapped = []
    for name in HELPERS:
        fn = getattr(ad, name, None)
        if fn is None or getattr(fn, "_guardrail_timed", False):
            continue
        setattr(ad, name, _timed(fn, event))
        wrapped.append(name)
    _state["installed"] = bool(wrapped) or _state["installed"]
    return wrapped


def _timed(fn: Callable[..., Any], event: Callable[[], Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        timer = _state["timer"]
        if timer is None or _state["depth"]:
            return fn(*args, **kwargs)
        _state["depth"] += 1
        try:
            pre = event()
            out = fn(*args, **kwargs)
            timer(pre, event())
            return out
        finally:
            _state["depth"] -= 1

    call._guardrail_timed = True  # type: ignore[attr-defined]
    return call
