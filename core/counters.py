"""An atomic counter in the shared cache, on every cache backend the app runs on.

Redis's INCR is atomic and local memory's incr holds a lock, but the file-system cache (the
embedded default) does get-then-set: twelve threads counting at once lost increments, and
120 searches passed a limit of 60 in one minute. For such a backend the add-and-increment
runs under an exclusive `flock` on a file next to the cache, which serialises the threads
and processes of one host (the file-system cache is one host's anyway).
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

_ATOMIC_INCR = (RedisCache, LocMemCache)


@contextlib.contextmanager
def _host_lock(cache: BaseCache) -> Iterator[None]:
    location = getattr(cache, "_dir", None) or str(settings.VAR_DIR)
    path = Path(location) / ".counters.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _add_and_incr(cache: BaseCache, key: str, timeout: int) -> int:
    cache.add(key, 0, timeout=timeout)
    try:
        return cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=timeout)
        return 1


def counter_incr(key: str, *, timeout: int) -> int:
    """Add one to the counter `key` (created at 0, expiring after `timeout` seconds) and
    return its new value; concurrent callers always see distinct values."""
    cache = caches["default"]
    if isinstance(cache, _ATOMIC_INCR):
        return _add_and_incr(cache, key, timeout)
    with _host_lock(cache):
        return _add_and_incr(cache, key, timeout)


def counter_get(key: str) -> int:
    return int(caches["default"].get(key, 0))
