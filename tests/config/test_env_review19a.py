"""envfloat refuses values float() takes but no setting can use: NaN and the infinities (an
ARBITER_SCORE_TIMEOUT_S of "nan" made every scoring request a 503 "queue unavailable")."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import envfloat


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_envfloat_refuses_non_finite_values(monkeypatch, value) -> None:
    monkeypatch.setenv("ARBITER_TEST_FLOAT", value)
    with pytest.raises(ImproperlyConfigured, match="finite"):
        envfloat("ARBITER_TEST_FLOAT", 1.0)


def test_envfloat_still_reads_numbers(monkeypatch) -> None:
    monkeypatch.setenv("ARBITER_TEST_FLOAT", "2.5")
    assert envfloat("ARBITER_TEST_FLOAT", 1.0) == 2.5
    monkeypatch.setenv("ARBITER_TEST_FLOAT", "")
    assert envfloat("ARBITER_TEST_FLOAT", 1.0) == 1.0


@pytest.mark.parametrize("value", ["0", "-1", "0.0"])
def test_a_timeout_must_be_above_zero(monkeypatch, value) -> None:
    """ARBITER_SCORE_TIMEOUT_S=0 made every scoring request an immediate 504."""
    monkeypatch.setenv("ARBITER_TEST_FLOAT", value)
    with pytest.raises(ImproperlyConfigured, match="above 0"):
        envfloat("ARBITER_TEST_FLOAT", 1.0, positive=True)


def test_a_minimum_is_inclusive(monkeypatch) -> None:
    monkeypatch.setenv("ARBITER_TEST_FLOAT", "0")
    assert envfloat("ARBITER_TEST_FLOAT", 1.0, minimum=0) == 0.0
    monkeypatch.setenv("ARBITER_TEST_FLOAT", "-0.5")
    with pytest.raises(ImproperlyConfigured, match="at least 0"):
        envfloat("ARBITER_TEST_FLOAT", 1.0, minimum=0)
