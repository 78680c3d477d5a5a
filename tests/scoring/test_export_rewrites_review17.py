"""Rewrites stored before the rewrite service refused unchanged copies and kept the original's
line breaks: the export leaves out a rewrite that is its original unchanged (line endings and
surrounding whitespace aside) and writes a kept one with the original's line breaks.

Review 17: such rows went out as (X ≻ X) pairs, or taught a reward model to prefer CRLF."""

from __future__ import annotations

import pytest

from annotation.models import Rewrite
from scoring.datasets.export import ExportCounts, ExportFilters, export_rows
from tests.factories import CampaignFactory, UserFactory
from tests.scoring.test_export import voted_pair

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


def test_unchanged_rewrites_are_left_out_and_line_breaks_follow_the_original():
    annotators = UserFactory.create_batch(3)
    campaign = CampaignFactory(allow_rewrites=True)
    pair = voted_pair(
        campaign,
        annotators,
        [1, 1, 1],
        consensus=1,
        provenance="unanimous",
        response_a="Line one.\nLine two.",
        response_b="Left\r\nas\r\nCRLF.",
    )

    def stored(author, text, based_on):  # as the service stored them before review 17
        return Rewrite.objects.create(
            pair=pair, campaign=campaign, author=author, text=text, based_on=based_on
        )

    stored(annotators[0], "Line one.\r\nLine two.\r\n", "a")  # a copy, CRLF from the textarea
    stored(annotators[1], "  Left\nas\nCRLF.  ", "b")  # a copy, LF where the original has CRLF
    fixed_a = stored(annotators[2], "Line one.\r\nLine two, fixed.", "a")
    fixed_b = stored(annotators[0], "Left\nas\nCRLF, fixed.", "b")
    counts = ExportCounts()

    rows = [
        row
        for _, row in export_rows(
            campaign=campaign, filters=ExportFilters(rewrites=True), counts=counts
        )
        if row["provenance"] == "rewrite"
    ]

    assert [(row["rewrite_id"], row["chosen"][-1]["content"]) for row in rows] == [
        (fixed_a.pk, "Line one.\nLine two, fixed."),
        (fixed_b.pk, "Left\r\nas\r\nCRLF, fixed."),
    ]
    assert [row["rejected"][-1]["content"] for row in rows] == [
        pair.response_a,
        pair.response_b,
    ]
    assert counts.rewrites == 2
    assert counts.unchanged_rewrites == 2  # the manifest says how many were left out
