"""Form and query numbers: what int_param takes, refuses and bounds."""

from __future__ import annotations

import pytest

from core.validation import DB_INT_MAX, IntegerOutOfRange, int_param


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("7", 7), (" -3 ", -3), ("+4", 4), (None, None), ("", None), ("x", None), ("1.5", None)],
)
def test_plain_numbers_are_read_and_others_are_none(raw, expected):
    assert int_param(raw) == expected


@pytest.mark.parametrize("raw", ["1_0", "\u0662", "\uff17"])
def test_python_only_spellings_of_a_number_are_not_numbers(raw):
    # int() takes "1_0" as 10 and Arabic-Indic or full-width digits.
    assert int_param(raw) is None


def test_a_number_beyond_the_database_is_refused():
    assert int_param(str(DB_INT_MAX)) == DB_INT_MAX
    with pytest.raises(IntegerOutOfRange):
        int_param(str(DB_INT_MAX + 1), name="round")
