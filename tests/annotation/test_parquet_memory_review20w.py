"""Parquet imports are bounded by what the data decodes to, not by the footer's sizes: a
dictionary-encoded column of one long value on every row is a few kilobytes on disk and in
the footer, and hundreds of megabytes of Python strings per batch once read."""

from __future__ import annotations

import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.importers import ImportFormatError, ImportLimits
from annotation.importers.formats import iter_parquet_rows
from annotation.importers.streams import estimated_cost_bytes
from annotation.models import ImportJob, Pair
from annotation.services.import_jobs import import_job_run
from tests.conftest import api_client_for

MIB = 1024 * 1024
LONG = "a" * 150_000


def _hostile(path, rows: int = 20_000) -> None:  # noqa: ANN001
    """Every row's response_a is the same 150,000 characters, held once in the dictionary."""
    table = pa.table(
        {
            "prompt": ["hi"] * rows,
            "response_a": pa.array([LONG] * rows).dictionary_encode(),
            "response_b": ["short"] * rows,
        }
    )
    pq.write_table(table, path, compression="zstd")


def _one_huge_row(path) -> None:  # noqa: ANN001
    """Row 3's responses list repeats the long value 120 times: 18 MB once decoded."""
    responses = [["x", "y"], ["x", "y"], [LONG] * 120, ["x", "y"]]
    table = pa.table({"prompt": ["p"] * 4, "responses": responses})
    pq.write_table(table, path, compression="zstd")


def test_a_hostile_parquet_file_is_read_in_bounded_memory(tmp_path):
    path = tmp_path / "hostile.parquet"
    _hostile(path)
    assert path.stat().st_size < 100_000
    footer = pq.read_metadata(path)
    assert sum(footer.row_group(i).total_byte_size for i in range(footer.num_row_groups)) < MIB

    seen = 0
    tracemalloc.start()
    try:
        for _, row in iter_parquet_rows(str(path), ImportLimits()):
            assert len(row["response_a"]) == len(LONG)
            seen += 1
            if seen == 6_000:  # past the first batch of 4,096 rows
                break
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Before: 4,096 rows of 150,000 characters (600 MB) made at once. Now slices of 32 MiB.
    assert peak < 160 * MIB


def test_parquet_decoded_text_counts_against_the_decompressed_limit(tmp_path):
    path = tmp_path / "hostile.parquet"
    _hostile(path)  # 3 GB of text once decoded
    with pytest.raises(ImportFormatError, match="decompressed size exceeds the limit"):
        for _ in iter_parquet_rows(str(path), ImportLimits(max_decompressed_bytes=200 * MIB)):
            pass


def test_a_parquet_row_over_the_row_limit_is_refused_naming_it(tmp_path):
    path = tmp_path / "huge_row.parquet"
    _one_huge_row(path)
    rows = []
    with pytest.raises(ImportFormatError) as refused:
        for position, _ in iter_parquet_rows(str(path), ImportLimits()):
            rows.append(position)
    assert refused.value.line == 3 and refused.value.unit == "row"
    assert "16,777,216 bytes" in str(refused.value)


def test_the_cost_of_a_parquet_file_is_measured_not_read_off_its_footer(tmp_path):
    path = tmp_path / "hostile.parquet"
    _hostile(path)
    assert estimated_cost_bytes(path, cap=5 * MIB) > 5 * MIB


@pytest.mark.django_db
def test_a_small_hostile_parquet_upload_goes_to_a_worker_which_names_the_row(
    campaign, admin_user, tmp_path
):
    path = tmp_path / "huge_row.parquet"
    _one_huge_row(path)
    upload = SimpleUploadedFile("pairs.parquet", path.read_bytes())
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/imports", {"file": upload}, format="multipart"
    )
    assert response.status_code == 202  # before: imported within the request
    job = ImportJob.objects.get(pk=response.json()["job"])
    assert job.status == ImportJob.Status.QUEUED
    job = import_job_run(job_id=job.pk)
    assert job.status == ImportJob.Status.FAILED
    assert "row 3" in job.error and "16,777,216" in job.error
    assert not Pair.objects.exists()


@pytest.mark.django_db
def test_a_small_ordinary_parquet_upload_still_imports_inline(campaign, admin_user, tmp_path):
    path = tmp_path / "pairs.parquet"
    pq.write_table(
        pa.table({"prompt": ["hi", "yo"], "response_a": ["a", "b"], "response_b": ["c", "d"]}),
        path,
    )
    upload = SimpleUploadedFile("pairs.parquet", path.read_bytes())
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/imports", {"file": upload}, format="multipart"
    )
    assert response.status_code == 201 and response.json()["created"] == 2
