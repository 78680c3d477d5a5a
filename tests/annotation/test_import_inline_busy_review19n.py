"""A small upload meets a campaign whose rounds lock is held (a large import in a worker, a
round closing): it goes to the background (202) rather than hold the web request until the
lock is free, hours for a large import. Before, the request waited on the lock with no bound:
ARBITER_IMPORT_INLINE_MAX_SECONDS counts only the reading, which starts after the lock."""

from __future__ import annotations

import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction

from annotation.models import ImportJob, Pair
from annotation.services.imports import campaign_rounds_lock
from tests.conftest import api_client_for, closing_connections, start_in_thread

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = b'{"prompt": "hi", "response_a": "hello", "response_b": "hey"}\n'


@pytest.fixture
def lock_held(campaign):
    """The campaign's rounds lock, held by another connection until the test ends."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with transaction.atomic():
            campaign_rounds_lock(campaign.pk)
            taken.set()
            release.wait(timeout=60)

    holder = start_in_thread(closing_connections(hold))
    assert taken.wait(timeout=30)
    yield
    release.set()
    holder.result(timeout=30)


def test_an_inline_import_meeting_a_held_lock_goes_to_a_worker(
    campaign, admin_user, lock_held, sent_tasks
):
    post = start_in_thread(
        closing_connections(
            lambda: api_client_for(admin_user).post(
                f"/api/campaigns/{campaign.pk}/imports",
                {"file": SimpleUploadedFile("p.jsonl", ROWS)},
                format="multipart",
            )
        )
    )
    response = post.result(timeout=15)  # before: waited for the lock, past this
    assert response.status_code == 202, response.content[:300]
    job = ImportJob.objects.get(pk=response.json()["job"])
    assert job.status == ImportJob.Status.QUEUED
    assert sent_tasks == [("annotation.import_pairs", (job.pk,))]
    assert not Pair.objects.exists()


def test_the_page_sends_it_to_a_worker_too(client, campaign, admin_user, lock_held, sent_tasks):
    client.force_login(admin_user)
    post = start_in_thread(
        closing_connections(
            lambda: client.post(
                f"/campaigns/{campaign.pk}/import/", {"file": SimpleUploadedFile("p.jsonl", ROWS)}
            )
        )
    )
    response = post.result(timeout=15)
    assert response.status_code == 302
    job = ImportJob.objects.get(campaign=campaign)
    assert job.status == ImportJob.Status.QUEUED
    assert sent_tasks == [("annotation.import_pairs", (job.pk,))]
