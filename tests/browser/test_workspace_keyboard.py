from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Assignment, Label, Scale
from annotation.services.labels import to_canonical
from tests.browser_support import wait_for_next_pair
from tests.factories import CampaignFactory, PairFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]


def pair_id_shown(page) -> str:  # noqa: ANN001
    return page.get_attribute("#pair", "data-assignment") or ""


def my_count(page) -> str:  # noqa: ANN001
    return page.inner_text("[data-stat=mine] strong")


@pytest.mark.smoke
def test_an_annotator_judges_and_skips_pairs_with_the_keyboard_only(
    page, live_server, annotator_a, watched
):
    campaign = CampaignFactory(scale=Scale.FIVE_POINT)
    PairFactory.create_batch(4, campaign=campaign)
    workspace = reverse("campaign-detail", args=[campaign.pk])

    # Log in through the form, by keyboard: the username field has autofocus.
    page.goto(f"{live_server.url}{reverse('login')}?next={workspace}")
    # Typing before autofocus has landed would lose keys on a busy machine.
    page.wait_for_function("document.activeElement && document.activeElement.name === 'username'")
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    page.keyboard.type("pw-alice")
    page.keyboard.press("Enter")
    page.wait_for_selector("#pair[data-assignment][data-ready]")
    # The pair's own URL (Back returns to it), in place of the campaign's.
    first_pair = reverse("assignment-page", args=[pair_id_shown(page)])
    page.wait_for_function("url => window.location.pathname === url", arg=first_pair)
    page.evaluate("window.__stillTheSamePage = 'yes'")
    loaded_at = page.evaluate("window.arbiter.loadedAt")

    # (key pressed, value shown on that button): 1 = A much better, s = A better,
    # 5 = B much better.
    judgments = [("1", 2), ("s", 1), ("5", -2)]
    shown_by_assignment: dict[int, int] = {}
    for number, (key, shown_value) in enumerate(judgments, start=1):
        current = pair_id_shown(page)
        page.keyboard.press(key)
        assert page.is_checked(f"input[name=preference][value='{shown_value}']")
        if number == 2:
            # A rationale and a confidence, still without the mouse.
            page.keyboard.press("r")
            page.keyboard.type("B rambles; A answers the question.")
            page.keyboard.press("Escape")
            page.keyboard.press("Shift+Digit4")
            assert page.is_checked("input[name=confidence][value='4']")
            page.wait_for_timeout(1200)  # a pair that took a while, for seconds_spent
        page.keyboard.press("Enter")
        wait_for_next_pair(page, current)
        shown_by_assignment[int(current)] = shown_value
        assert my_count(page) == str(number)
        assert "Saved." in page.inner_text("#pair .notice")

    skipped = pair_id_shown(page)
    page.keyboard.press("k")
    page.wait_for_selector("#pair[data-ready] >> text=Nothing left to judge")
    assert my_count(page) == "3"
    assert "1 skipped" in page.inner_text("#progress")

    # No full page load happened: the document and its globals are the ones from the start.
    assert page.evaluate("window.__stillTheSamePage") == "yes"
    assert page.evaluate("window.arbiter.loadedAt") == loaded_at
    assert page.url == f"{live_server.url}{workspace}"  # no pair left: the campaign's URL
    assert watched.page_errors == []

    assert Assignment.objects.get(pk=skipped).status == Assignment.Status.SKIPPED
    labels = Label.objects.filter(annotator=annotator_a).select_related("assignment")
    assert {label.assignment_id for label in labels} == set(shown_by_assignment)
    for label in labels:
        shown = shown_by_assignment[label.assignment_id]
        assert label.preference == to_canonical(shown, swapped=label.assignment.swapped)
        assert label.shown_first == ("b" if label.assignment.swapped else "a")
        assert label.seconds_spent is not None and 0 <= label.seconds_spent < 120
    second = next(label for label in labels if shown_by_assignment[label.assignment_id] == 1)
    assert (second.rationale, second.confidence) == ("B rambles; A answers the question.", 4)
    assert second.seconds_spent >= 1.2
