"""Upload bombs: every upload path streams with limits on the bytes it actually decompresses
(not what headers claim), on line length and on time, and pair imports go to the background by
what reading them will cost. The bombs are built here, small and fast."""

from __future__ import annotations

import gzip
import io
import struct
import tracemalloc
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.importers import ImportFormatError, ImportLimits, parse_all
from annotation.importers.streams import estimated_cost_bytes
from annotation.models import ImportJob, Pair
from annotation.services.corpus import CorpusError, documents_from_upload
from tests.conftest import api_client_for

MIB = 1024 * 1024


def _gzip_of(piece: bytes, copies: int) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1) as packed:
        for _ in range(copies):
            packed.write(piece)
    return out.getvalue()


def _zip_understating(member: str, real_bytes: int, claimed: int) -> bytes:
    """A zip whose one member really inflates to `real_bytes` while its local and central
    headers say `claimed`."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open(member, "w", force_zip64=False) as handle:
            chunk = b"a" * MIB
            for _ in range(real_bytes // MIB):
                handle.write(chunk)
    data = bytearray(out.getvalue())
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, claimed)
    struct.pack_into("<I", data, central + 24, claimed)
    return bytes(data)


def _peak_bytes_while(action) -> int:  # noqa: ANN001
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _load(name: str, content: bytes, **limits: object) -> None:
    options = {"max_bytes": 400 * MIB, "max_seconds": 20.0, **limits}
    list(documents_from_upload([(name, io.BytesIO(content))], **options))  # type: ignore[arg-type]


# --- the corpus loader --------------------------------------------------------------------


def test_a_zip_whose_header_understates_its_size_is_refused_in_bounded_memory():
    bomb = _zip_understating("notes.md", real_bytes=128 * MIB, claimed=100)
    assert len(bomb) < 2 * MIB

    def load() -> None:
        with pytest.raises(CorpusError):
            _load("corpus.zip", bomb)

    assert _peak_bytes_while(load) < 24 * MIB


def test_a_zip_member_larger_than_a_document_is_refused_whatever_its_header_says():
    bomb = _zip_understating("notes.md", real_bytes=16 * MIB, claimed=16 * MIB)
    with pytest.raises(CorpusError, match="larger than"):
        _load("corpus.zip", bomb)


def test_a_gzipped_jsonl_line_longer_than_the_limit_is_refused_in_bounded_memory():
    bomb = _gzip_of(b"x" * MIB, 128)  # one 128 MiB line
    assert len(bomb) < 2 * MIB

    def load() -> None:
        with pytest.raises(CorpusError, match="longer than"):
            _load("corpus.jsonl.gz", bomb)

    assert _peak_bytes_while(load) < 24 * MIB


def test_blank_lines_count_toward_the_bytes_and_the_time_limit():
    blank = _gzip_of(b"\n" * MIB, 64)  # 64 MiB of blank lines in a ~64 KB file
    with pytest.raises(CorpusError, match="unpacks to more than"):
        _load("corpus.jsonl.gz", blank, max_bytes=8 * MIB)
    # A limit no read of 64 MiB can meet, so the clock cannot decide the outcome (0.3 s was
    # met once on a quiet machine): what is tested is that blank lines reach the clock check.
    with pytest.raises(CorpusError, match="took longer than"):
        _load("corpus.jsonl.gz", blank, max_seconds=1e-6)


# --- pair imports ---------------------------------------------------------------------------


def test_the_pairs_reader_stops_at_its_time_limit(tmp_path):
    path = tmp_path / "blank.jsonl.gz"
    path.write_bytes(_gzip_of(b"\n" * MIB, 256))
    with pytest.raises(ImportFormatError, match="took longer than"):
        parse_all(path, limits=ImportLimits(max_seconds=0.3))


def test_the_cost_of_a_gzip_file_is_measured_not_read_off_its_size(tmp_path):
    path = tmp_path / "blank.jsonl.gz"
    path.write_bytes(_gzip_of(b"\n" * MIB, 64))
    assert path.stat().st_size < MIB
    assert estimated_cost_bytes(path, cap=5 * MIB) > 5 * MIB  # stops just past the cap
    plain = tmp_path / "small.jsonl"
    plain.write_bytes(b"{}\n")
    assert estimated_cost_bytes(plain, cap=5 * MIB) == 3


@pytest.mark.django_db
@pytest.mark.smoke
def test_a_small_gzip_that_unpacks_to_much_is_imported_in_the_background(campaign, admin_user):
    blank = _gzip_of(b"\n" * MIB, 64)
    upload = SimpleUploadedFile("pairs.jsonl.gz", blank)
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/imports", {"file": upload}, format="multipart"
    )
    assert response.status_code == 202
    assert ImportJob.objects.get(pk=response.json()["job"]).status == ImportJob.Status.QUEUED
    assert not Pair.objects.exists()


@pytest.mark.django_db
@pytest.mark.smoke
def test_a_small_plain_import_still_runs_inline(campaign, admin_user):
    rows = b'{"prompt": "hi", "response_a": "hello", "response_b": "hey"}\n'
    upload = SimpleUploadedFile("pairs.jsonl.gz", _gzip_of(rows, 1))
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/imports", {"file": upload}, format="multipart"
    )
    assert response.status_code == 201 and response.json()["created"] == 1


# --- evaluation sets ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_gzipped_evaluation_set_bomb_is_refused_in_bounded_memory(campaign, admin_user):
    from scoring.datasets.curation.evaluation_sets import (
        MAX_EVALUATION_SET_DECOMPRESSED_BYTES,
        CurationError,
        evaluation_prompts_read,
    )

    bomb = _gzip_of(b"a prompt\n" * (MIB // 8), 8 * MAX_EVALUATION_SET_DECOMPRESSED_BYTES // MIB)

    def read() -> None:
        with pytest.raises(CurationError, match="decompresses to more than"):
            evaluation_prompts_read(io.BytesIO(bomb), filename="set.txt.gz")

    assert _peak_bytes_while(read) < 3 * MAX_EVALUATION_SET_DECOMPRESSED_BYTES
    # The API reads evaluation sets with the pair importer's streaming limits (and refuses a
    # file of bare prompts: an evaluation set has chosen and rejected answers).
    upload = SimpleUploadedFile("set.txt.gz", bomb)
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/evaluation-sets", {"file": upload, "name": "bench"}
    )
    assert response.status_code == 400 and "set.txt.gz" in response.json()["detail"]
