"""A file that is not UTF-8 is refused saying so, where it is: a UTF-16 file (PowerShell's ">"
writes one) by its byte order mark, whatever its name, rather than as "not a file of pairs" or
a JSON error about surrogates; a Latin-1 byte in a CSV file on the line that holds it (the
reader decoded 8 KiB ahead and named a line hundreds before it); in a JSONL file with the
byte's place on the line (orjson says "surrogates not allowed" at column 1 for any bad byte)."""

from __future__ import annotations

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.importers import ImportFormatError, parse_all
from annotation.models import Pair
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db

UTF16 = (
    "the file is not UTF-8 (it starts with a UTF-16 or UTF-32 byte order mark): save it as UTF-8"
)
ROW = {"prompt": "Où est la gare ?", "response_a": "À gauche.", "response_b": "Tout droit."}


def _error(data: bytes, filename: str | None) -> str:
    with pytest.raises(ImportFormatError) as raised:
        parse_all(io.BytesIO(data), filename=filename)
    return str(raised.value)


def _jsonl(rows: list[dict[str, str]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
@pytest.mark.parametrize("filename", ["pairs.jsonl", "pairs.json", "pairs", None])
def test_a_utf16_or_utf32_jsonl_file_is_refused_for_its_encoding(encoding, filename) -> None:
    text = _jsonl([ROW])
    data = text.encode(encoding) if encoding != "utf-16-be" else b"\xfe\xff" + text.encode(encoding)
    assert _error(data, filename) == UTF16


def test_a_utf16_csv_file_is_refused_for_its_encoding() -> None:
    data = "prompt,response_a,response_b\nq,a,b\n".encode("utf-16")
    assert _error(data, "pairs.csv") == UTF16


def test_a_latin1_byte_in_a_csv_file_names_its_own_line() -> None:
    rows = "".join(f"question {index},a,b\n" for index in range(2000))
    data = b"prompt,response_a,response_b\n" + rows.encode() + "café,a,b\n".encode("latin-1")
    assert _error(data, "pairs.csv") == "line 2002: the file is not valid UTF-8: save it as UTF-8"


def test_a_latin1_byte_in_a_jsonl_line_is_named_as_such() -> None:
    data = _jsonl([ROW]).encode() + _jsonl([{**ROW, "prompt": "café"}]).encode("latin-1")
    assert _error(data, "pairs.jsonl") == (
        "line 2: not valid UTF-8 at byte 16 of the line: save the file as UTF-8"
    )


def test_utf8_with_or_without_a_byte_order_mark_still_imports_every_character() -> None:
    text = _jsonl([ROW])
    csv_text = "prompt,response_a,response_b\nOù est la gare ?,À gauche.,Tout droit.\n"
    for data, name in [
        (text.encode(), "pairs.jsonl"),
        (b"\xef\xbb\xbf" + text.encode(), "pairs.jsonl"),
        (csv_text.encode(), "pairs.csv"),
        (b"\xef\xbb\xbf" + csv_text.encode(), "pairs.csv"),
    ]:
        [record] = parse_all(io.BytesIO(data), filename=name)
        assert (record.conversation[0]["content"], record.response_a) == (
            ROW["prompt"],
            "À gauche.",
        )


def test_uploading_a_utf16_file_answers_400_saying_so_and_keeps_nothing(admin_user, campaign):
    upload = SimpleUploadedFile("pairs.jsonl", _jsonl([ROW]).encode("utf-16"))
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/imports", {"file": upload}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json()["detail"] == UTF16
    assert not Pair.objects.filter(campaign=campaign).exists()
