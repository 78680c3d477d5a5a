"""A rollback racing an activation: an admin activates v3 while another rolls back from the
active v2. In either order one after the other the result is a version someone asked for (v3
rolled back to v2, or v1 then v3); a rollback that read the active version before the
activation committed undid it and activated v1 from a stale v2. Real threads on PostgreSQL;
the only hook is a pause after the rollback reads the active version."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from scoring.loop import registry
from scoring.loop.registry import model_version_activate, model_version_rollback
from scoring.models import ModelVersion
from tests.conftest import closing_connections, lock_waiters, run_concurrently
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_rollback_does_not_undo_an_activation_it_did_not_see(monkeypatch, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("needs two PostgreSQL sessions")
    campaign = CampaignFactory()
    for number in (1, 2, 3):
        (tmp_path / f"v{number}").mkdir()
        ModelVersion.objects.create(
            campaign=campaign,
            number=number,
            base="base",
            checkpoint=str(tmp_path / f"v{number}"),
            is_active=number == 2,
        )
    v3 = ModelVersion.objects.get(campaign=campaign, number=3)

    rollback_read = threading.Event()
    activated = threading.Event()
    original = registry.active_model_version

    def active_model_version(**kwargs):
        active = original(**kwargs)
        rollback_read.set()
        # Until the activation committed, or waits on a lock this rollback holds.
        deadline = time.monotonic() + 30
        while not activated.is_set() and lock_waiters() == 0:
            assert time.monotonic() < deadline, "the activation neither ended nor waited"
            time.sleep(0.05)
        return active

    monkeypatch.setattr(registry, "active_model_version", active_model_version)

    def activate_v3():
        assert rollback_read.wait(30)
        try:
            return model_version_activate(version=v3)
        finally:
            activated.set()

    run_concurrently(
        [
            closing_connections(lambda: model_version_rollback(campaign=campaign)),
            closing_connections(activate_v3),
        ]
    )
    active = ModelVersion.objects.get(campaign=campaign, is_active=True)
    assert active.number in (2, 3), f"v{active.number} is active: the activation was undone"
