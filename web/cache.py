"""A small in-process cache with a time limit, for read models that every visitor asks for (the overview).

Each worker holds its own; entries expire after `ttl` seconds, and a write through this worker clears it, so
a page is at most `ttl` seconds behind writes made through other workers or the CLI."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any


class TTLCache:
    def __init__(self, ttl: float = 10.0, max_entries: int = 256):
        self.ttl, self.max_entries = ttl, max_entries
        self._data: dict[Hashable, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        now = time.monotonic()
        with self._lock:
            hit = self._data.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = compute()
        with self._lock:
            if len(self._data) >= self.max_entries:
                self._data.clear()
            self._data[key] = (now + self.ttl, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
