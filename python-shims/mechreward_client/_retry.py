"""When to retry a failed call and how long to wait first. Shared by the sync and async clients."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from . import _constants as C
from ._exceptions import APIError, OverloadedError

log = logging.getLogger("mechreward_client")


@dataclass(frozen=True)
class RetryPolicy:
    #: Attempts after the first one.
    retries: int = C.DEFAULT_RETRIES
    initial_backoff_s: float = C.INITIAL_BACKOFF_S
    max_backoff_s: float = C.MAX_BACKOFF_S
    jitter: float = C.BACKOFF_JITTER

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries: expected >= 0, got {self.retries}")

    def next_delay(self, retries_done: int, error: APIError) -> float | None:
        """Seconds to wait before the next attempt, or None to give up and raise ``error``."""
        if not error.retryable or retries_done >= self.retries:
            log.debug("mechreward: not retrying %s after %d retries", error, retries_done)
            return None
        delay = min(self.initial_backoff_s * 2**retries_done, self.max_backoff_s)
        if isinstance(error, OverloadedError):
            # The server sheds load at once; HTTP clients are told retry-after: 1, gRPC ones get no header.
            delay = max(delay, C.OVERLOAD_MIN_BACKOFF_S)
        delay *= 1.0 + random.uniform(0.0, self.jitter)
        log.debug("mechreward: retry %d/%d in %.2fs after %s", retries_done + 1, self.retries, delay, error)
        return delay
