"""How long a dashboard panel is kept: ten times as long as it took to compute where that
outlasts its base lifetime, but never past ``MAX_KEEP_SECONDS``. The computation's length
comes from a stepped clock, and the cache's expiry from time_machine: no test waits."""

from __future__ import annotations

import time
import types

import pytest
import time_machine

from scoring.dashboard import selectors


class _Clock:
    """The monotonic clock ``_cached`` times a computation with, stepped by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch, private_cache) -> _Clock:
    stepped = _Clock()
    monkeypatch.setattr(selectors, "time", types.SimpleNamespace(monotonic=stepped.monotonic))
    return stepped


def _panel(clock: _Clock, took: float):  # noqa: ANN202 - a compute callable and its calls
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        clock.now += took  # as long as this computation took
        return len(calls)

    return compute, calls


def test_a_panel_slowed_once_for_minutes_is_computed_again_within_the_cap(clock) -> None:
    # A grouped count that waited ten minutes on a lock: kept 300 s, not 6,000 s.
    compute, calls = _panel(clock, took=600.0)
    with time_machine.travel(time.time(), tick=False) as traveller:
        assert selectors._cached("test:panel:capped", 10, compute) == 1
        traveller.shift(295)  # MAX_KEEP_SECONDS: 300
        assert selectors._cached("test:panel:capped", 10, compute) == 1
        traveller.shift(10)
        assert selectors._cached("test:panel:capped", 10, compute) == 2
    assert len(calls) == 2


def test_a_slow_panel_is_kept_ten_times_as_long_as_it_took(clock) -> None:
    compute, calls = _panel(clock, took=3.0)  # kept 30 s rather than 10 s
    with time_machine.travel(time.time(), tick=False) as traveller:
        assert selectors._cached("test:panel:slow", 10, compute) == 1
        traveller.shift(25)
        assert selectors._cached("test:panel:slow", 10, compute) == 1
        traveller.shift(10)
        assert selectors._cached("test:panel:slow", 10, compute) == 2
    assert len(calls) == 2


def test_a_quick_panel_keeps_its_base_lifetime(clock) -> None:
    compute, calls = _panel(clock, took=0.05)
    with time_machine.travel(time.time(), tick=False) as traveller:
        assert selectors._cached("test:panel:quick", 10, compute) == 1
        traveller.shift(11)
        assert selectors._cached("test:panel:quick", 10, compute) == 2
    assert len(calls) == 2
