"""A dashboard panel that took long to compute is kept longer than its base lifetime."""

from __future__ import annotations

import time
import uuid

from django.core.cache import cache

from scoring.dashboard import selectors


def test_a_slow_panel_is_kept_ten_times_as_long_as_it_took() -> None:
    key = f"test:panel:{uuid.uuid4().hex}"
    calls: list[float] = []

    def slow_compute() -> dict[str, int]:
        calls.append(time.monotonic())
        time.sleep(0.3)  # ten times this (3 s) outlives the 1-s base lifetime
        return {"n": len(calls)}

    assert selectors._cached(key, 1, slow_compute) == {"n": 1}
    time.sleep(1.5)
    assert selectors._cached(key, 1, slow_compute) == {"n": 1}
    assert len(calls) == 1
    cache.delete(key)


def test_a_quick_panel_keeps_its_base_lifetime() -> None:
    key = f"test:panel:{uuid.uuid4().hex}"
    calls: list[int] = []

    def quick_compute() -> int:
        calls.append(1)
        return len(calls)

    assert selectors._cached(key, 1, quick_compute) == 1
    time.sleep(1.2)
    assert selectors._cached(key, 1, quick_compute) == 2
    cache.delete(key)
