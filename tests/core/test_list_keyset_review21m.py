"""``core.paging.keyset_list_page``: a list in memory paged by a key of its rows, with the
cursors and the first page of ``keyset_page`` (no database)."""

from __future__ import annotations

import base64
import json

import pytest

from core.errors import BadRequest
from core.paging import keyset_list_page

ROWS = [{"name": name, "id": n} for n, name in enumerate(["d", "b", "a", "c", "b", "e", "a"])]


def _key(row):
    return (row["name"], row["id"])


def _page(**kwargs):
    return keyset_list_page(ROWS, key=_key, size=kwargs.pop("size", 3), **kwargs)


def _keys(page):
    return [_key(row) for row in page.rows]


def _cursor(values) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def test_it_walks_the_list_forward_and_back_in_key_order():
    ordered = sorted(map(_key, ROWS))
    first = _page()
    assert _keys(first) == ordered[0:3] and first.first and first.previous_cursor is None
    second = _page(after=first.next_cursor)
    assert _keys(second) == ordered[3:6] and not second.first
    last = _page(after=second.next_cursor)
    assert _keys(last) == ordered[6:] and last.next_cursor is None
    assert _keys(_page(before=last.previous_cursor)) == ordered[3:6]
    # Nothing a full page before: the first page, as keyset_page answers.
    back = _page(before=second.previous_cursor)
    assert _keys(back) == ordered[0:3] and back.first


def test_a_row_removed_meanwhile_shifts_nothing():
    first = _page()
    fewer = [row for row in ROWS if _key(row) != ("b", 1)]  # on the first page
    second = keyset_list_page(fewer, key=_key, size=3, after=first.next_cursor)
    assert _keys(second) == _keys(_page(after=first.next_cursor)) == [("b", 4), ("c", 3), ("d", 0)]


def test_an_empty_list_has_one_empty_page():
    page = keyset_list_page([], key=_key, size=3)
    assert page.rows == [] and page.next_cursor is None and page.first


@pytest.mark.parametrize(
    "cursor",
    ["not a cursor", _cursor(["a"]), _cursor([1, 2]), _cursor(["a", True]), _cursor({"a": 1})],
)
def test_a_cursor_not_of_this_list_is_a_bad_request(cursor):
    with pytest.raises(BadRequest):
        _page(after=cursor)
    with pytest.raises(BadRequest):
        _page(before=cursor)
