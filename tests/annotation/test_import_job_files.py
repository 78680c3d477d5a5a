"""An uploaded import file is removed once its import has finished, whatever the outcome; the
job row keeps what an audit needs (name, size, SHA-256, who, when, outcome). A file named on
the command line is the user's and stays."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.models import ImportJob
from annotation.services.import_jobs import import_job_create, import_job_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.smoke]

GOOD = b'{"prompt": "hi", "response_a": "hello", "response_b": "hey"}\n'
BAD = GOOD + b"not json\n"


@pytest.mark.parametrize(("content", "status"), [(GOOD, "succeeded"), (BAD, "failed")])
def test_the_uploaded_file_is_removed_when_the_import_finishes(
    content, status, campaign, admin_user
):
    upload = SimpleUploadedFile("pairs.jsonl", content)
    job = import_job_create(campaign=campaign, upload=upload, user=admin_user)
    stored = Path(job.file)
    assert stored.exists()
    job = import_job_run(job_id=job.pk)
    assert job.status == status
    assert not stored.exists()
    assert not list(stored.parent.iterdir())
    audit = ImportJob.objects.get(pk=job.pk)
    assert audit.original_name == "pairs.jsonl"
    assert audit.file_bytes == len(content)
    assert audit.file_sha256 == hashlib.sha256(content).hexdigest()
    assert audit.created_by == admin_user and audit.finished_at is not None


def test_a_file_imported_from_a_path_is_left_where_it_was(tmp_path, campaign):
    source = tmp_path / "mine.jsonl"
    source.write_bytes(GOOD)
    job = import_job_run(job_id=import_job_create(campaign=campaign, path=source).pk)
    assert job.status == "succeeded"
    assert source.read_bytes() == GOOD


def test_an_upload_named_past_the_file_systems_255_bytes_still_imports(campaign, admin_user):
    # 156 characters, under the 200 accepted, but 306 bytes in UTF-8: past Linux's 255.
    name = "é" * 150 + ".jsonl"
    job = import_job_create(campaign=campaign, upload=SimpleUploadedFile(name, GOOD))
    assert len(Path(job.file).name.encode()) < 255
    assert Path(job.file).name.endswith(".jsonl")
    job = import_job_run(job_id=job.pk)
    assert job.status == "succeeded"
    assert job.original_name == name
