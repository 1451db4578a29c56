"""Logging that cannot flood: during an outage every request fails the same way, and a
warning per request wrote 7.4 MB of log in 14 s. `Throttled` logs a message at most
once per `every` seconds per key and says how many it held back meanwhile."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class Throttled:
    def __init__(
        self, logger: logging.Logger, every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.logger = logger
        self.every = every
        self.clock = clock
        self._last: dict[str, tuple[float, int]] = {}

    def warning(self, key: str, msg: str, *args: object) -> bool:
        """Log `msg % args` unless `key` was logged less than `every` seconds ago; True
        if it was logged."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.every:
            self._last[key] = (last[0], last[1] + 1)
            return False
        held, since = (last[1], now - last[0]) if last is not None else (0, 0.0)
        if held:
            msg += f" (and {held} more like it in the last {since:.0f} s)"
        self.logger.warning(msg, *args)
        if len(self._last) > 1024:  # keys are few (one per failure kind); bound it anyway
            self._last.clear()
        self._last[key] = (now, 0)
        return True
