"""Review 18b: a Skip posted for a qualification check that is no longer active (answered in
another tab, or its lease ran out) is refused as any finished pair's skip is: "no longer
active", the pair closed. It reopened the answered check's form instead, with "answer it as
best you can", and the answer sent from it was refused as "Your label was not saved"."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotation.models import Assignment, Label
from annotation.services.assignments import assignments_expire
from annotation.services.labels import LabelInput, label_submit
from tests.annotation.test_qualification_skip_review18 import HTMX, _qualifying_member_with_a_check

pytestmark = pytest.mark.django_db


def _post_skip(user, check: Assignment) -> str:  # noqa: ANN001
    browser = Client()
    browser.force_login(user)
    page = browser.post(reverse("assignment-skip", args=[check.pk]), headers=HTMX)
    assert page.status_code == 409
    return page.content.decode()


def test_a_skip_of_an_answered_qualification_check_closes_it_and_keeps_the_answer():
    _campaign, user, check = _qualifying_member_with_a_check("quirin")
    label_submit(assignment=check, data=LabelInput(preference=1))

    html = _post_skip(user, check)

    assert "Not skipped." in html and "no longer active" in html
    assert "answer it as best you can" not in html
    assert "data-closed" in html and "Go to the next pair" in html
    assert ">Submit <kbd>" not in html
    check.refresh_from_db()
    assert check.status == Assignment.Status.SUBMITTED
    assert Label.objects.filter(assignment=check).count() == 1


def test_a_skip_of_a_lapsed_qualification_check_closes_it_for_the_next_pair_to_reissue():
    campaign, user, check = _qualifying_member_with_a_check("quirina")
    assert assignments_expire(now=timezone.now() + timedelta(seconds=campaign.lease_seconds + 60))
    check.refresh_from_db()
    assert check.status == Assignment.Status.EXPIRED

    html = _post_skip(user, check)

    assert "Not skipped." in html and "no longer active" in html
    assert "data-closed" in html and "Go to the next pair" in html
    check.refresh_from_db()
    assert check.status == Assignment.Status.EXPIRED
