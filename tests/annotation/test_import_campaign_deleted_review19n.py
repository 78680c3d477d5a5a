"""A campaign deleted (Django admin) while its import is under way: the import's transaction
rolls back, and its uploaded file is removed then, not left in the uploads folder for the
day-old sweep. Before, recording the failure on the job row (deleted with the campaign)
raised first, and the removal after it never ran."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.models import Campaign, Pair
from annotation.services import import_jobs
from annotation.services.import_jobs import import_job_create, import_job_run
from tests.conftest import closing_connections, start_in_thread

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = b'{"prompt": "hi", "response_a": "hello", "response_b": "hey"}\n'


def test_an_import_whose_campaign_is_deleted_meanwhile_keeps_no_file(campaign, monkeypatch):
    job = import_job_create(campaign=campaign, upload=SimpleUploadedFile("p.jsonl", ROWS))
    stored = Path(job.file)
    real_import = import_jobs.pairs_import

    def campaign_deleted_first(**kwargs):
        # Another connection deletes the campaign (its jobs go with it) and commits.
        start_in_thread(
            closing_connections(lambda: Campaign.objects.filter(pk=campaign.pk).delete())
        ).result(timeout=30)
        return real_import(**kwargs)

    monkeypatch.setattr(import_jobs, "pairs_import", campaign_deleted_first)
    with pytest.raises(Exception):  # noqa: B017, PT011 - the task fails, logged; any error
        import_job_run(job_id=job.pk)
    assert not Pair.objects.exists()
    assert not stored.exists()
