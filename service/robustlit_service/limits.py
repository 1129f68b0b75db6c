"""Rate limits per API key or user, and the dispatcher's wake-up queue; in memory, or shared through Redis."""

from __future__ import annotations

import math
import threading
import time
from typing import Any


class RateLimiter:
    """A fixed-window counter: at most ``limit`` hits per ``window`` seconds for each key, in this process.

    Example:
        >>> limiter = RateLimiter(limit=2, window=60)
        >>> [limiter.hit("key")[0] for _ in range(3)]
        [True, True, False]
    """

    def __init__(self, limit: int, window: int) -> None:
        self.limit = limit
        self.window = window
        self._counts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> tuple[bool, int]:
        """Count one request of ``key``; returns ``(allowed, seconds until the window resets)``."""
        now = time.time()
        slot = int(now // self.window)
        retry_after = max(1, math.ceil((slot + 1) * self.window - now))
        with self._lock:
            count = self._counts.get((key, slot), 0) + 1
            self._counts[(key, slot)] = count
            if len(self._counts) > 10_000:
                self._counts = {k: v for k, v in self._counts.items() if k[1] >= slot}
        return count <= self.limit, retry_after


class RedisRateLimiter(RateLimiter):
    """The same fixed window, counted in Redis so that every API replica shares it.

    Keys live under ``robustlit:<namespace>:``; replicas of one deployment share a namespace.
    """

    def __init__(self, client: Any, limit: int, window: int, namespace: str = "default") -> None:
        super().__init__(limit, window)
        self.client = client
        self.namespace = namespace

    def hit(self, key: str) -> tuple[bool, int]:
        """Count one request of ``key`` in Redis."""
        now = time.time()
        slot = int(now // self.window)
        retry_after = max(1, math.ceil((slot + 1) * self.window - now))
        name = f"robustlit:{self.namespace}:rate:{key}:{slot}"
        pipe = self.client.pipeline()
        pipe.incr(name)
        pipe.expire(name, self.window * 2)
        count, _ = pipe.execute()
        return int(count) <= self.limit, retry_after


class WakeUp:
    """Wakes the dispatcher when a run is queued (``notify``), else it polls every ``timeout`` seconds.

    Example:
        >>> wake = WakeUp()
        >>> wake.notify("r1"); wake.wait(0.01)
        True
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def notify(self, run_id: str) -> None:
        """Signal that ``run_id`` was queued."""
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a notification; whether one came."""
        fired = self._event.wait(timeout)
        self._event.clear()
        return fired


class RedisWakeUp(WakeUp):
    """Queued run ids go through a Redis list, so any replica's dispatcher picks up a run queued by another.

    The database stays the source of truth (runs are claimed there with a compare-and-set); the list only
    makes an idle replica react at once instead of at its next poll.
    """

    def __init__(self, client: Any, namespace: str = "default") -> None:
        super().__init__()
        self.client = client
        self.key = f"robustlit:{namespace}:queue"

    def notify(self, run_id: str) -> None:
        """Push ``run_id`` onto the shared list (and wake this process)."""
        self.client.lpush(self.key, run_id)
        self.client.ltrim(self.key, 0, 9999)
        super().notify(run_id)

    def wait(self, timeout: float) -> bool:
        """Pop one queued id from Redis, waiting up to ``timeout`` seconds."""
        if super().wait(0):
            return True
        return self.client.brpop([self.key], timeout=max(timeout, 0.01)) is not None


def redis_client(url: str) -> Any:
    """A Redis client for ``url`` that answers with ``str``."""
    import redis

    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=10, health_check_interval=30)
