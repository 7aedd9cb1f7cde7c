"""Per-channel rate limit of the PBX endpoint: a token bucket per channel key.

Keys are never kept: buckets are found by a keyed hash of the key (the hash
key is random per process). Memory is bounded: at most `max_buckets` buckets
live in an LRU, and a bucket that has refilled completely is no different from
a new one, so idle buckets are dropped first when room is needed.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable

# Enough for every real channel of a deployment many times over; a flood of
# made-up keys only ever recycles the least recently used buckets.
DEFAULT_MAX_BUCKETS = 10_000


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class RateLimiter:
    """`rate` requests per second per key with bursts of `burst`; rate 0 turns it off."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        max_buckets: int = DEFAULT_MAX_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate < 0:
            raise ValueError("rate must not be negative")
        if max_buckets < 1:
            raise ValueError("max_buckets must be positive")
        self.rate = rate
        self.burst = max(1.0, 2 * rate if burst is None else burst)
        self.max_buckets = max_buckets
        self._clock = clock
        self._salt = os.urandom(16)
        self._buckets: OrderedDict[bytes, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def _digest(self, key: str) -> bytes:
        return hashlib.blake2b(
            key.encode("utf-8", "surrogatepass"), key=self._salt, digest_size=16
        ).digest()

    def acquire(self, key: str) -> float:
        """Takes one token for `key`: 0 when allowed, else the seconds until one is free."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        self._drop_idle(now, limit=2)
        digest = self._digest(key)
        bucket = self._buckets.get(digest)
        if bucket is None:
            if len(self._buckets) >= self.max_buckets:
                self._drop_idle(now)
            while len(self._buckets) >= self.max_buckets:
                self._buckets.popitem(last=False)
            bucket = _Bucket(self.burst, now)
            self._buckets[digest] = bucket
        else:
            self._buckets.move_to_end(digest)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> int:
        """Whole seconds for a Retry-After header: never 0."""
        return max(1, math.ceil(wait))

    def _drop_idle(self, now: float, limit: int | None = None) -> None:
        """Drops buckets that have refilled completely (no different from new ones).

        The LRU order is also the order of last use, so they all sit at the cold end.
        """
        refill = self.burst / self.rate
        dropped = 0
        while self._buckets and (limit is None or dropped < limit):
            digest, bucket = next(iter(self._buckets.items()))
            if now - bucket.updated < refill:
                return
            del self._buckets[digest]
            dropped += 1
