"""The workspace's layout in headless Chromium: the tools beside the responses on wide screens
(sticky), dark mode from prefers-color-scheme, the narrow layout, the skip link and focus order."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.browser_support import log_in_with_session
from tests.factories import CampaignFactory, PairFactory

pytestmark = [pytest.mark.browser]

LONG = "\n\n".join(f"Paragraph {n}: " + "words " * 60 for n in range(40))


@pytest.fixture
def workspace(page, browser_context, live_server, annotator_a):
    campaign = CampaignFactory()
    PairFactory(campaign=campaign, response_a=LONG, response_b="```python\nprint(1)\n```")
    log_in_with_session(browser_context, live_server, annotator_a)

    def open_at(width: int, height: int):
        page.set_viewport_size({"width": width, "height": height})
        page.goto(f"{live_server.url}{reverse('campaign-detail', args=[campaign.pk])}")
        page.wait_for_selector("#pair[data-ready]")
        return page

    return open_at


def test_the_tools_stay_beside_the_responses_while_scrolling(workspace):
    page = workspace(1440, 900)
    tools = page.locator("aside.tools")
    responses = page.locator("#response-b").bounding_box()
    box = tools.bounding_box()
    assert box["x"] >= responses["x"] + responses["width"]  # beside, not below
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    assert page.evaluate("window.scrollY") > 300
    box = tools.bounding_box()
    assert 0 <= box["y"] < 900  # still in view
    assert page.evaluate("document.documentElement.scrollWidth") <= 1440


def _luminance(rgb: str) -> float:
    red, green, blue = (
        int(part) for part in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3]
    )
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def test_dark_mode_follows_the_colour_scheme(workspace):
    page = workspace(1440, 900)
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.emulate_media(color_scheme="dark")
    dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
    card = page.evaluate("getComputedStyle(document.querySelector('#response-a')).backgroundColor")
    text = page.evaluate("getComputedStyle(document.body).color")
    assert _luminance(light) > 200
    assert _luminance(dark) < 40 and _luminance(card) < 60
    assert _luminance(text) > 180  # light text on the dark page


def test_the_narrow_layout_has_no_horizontal_scroll_and_one_row_of_choices(workspace):
    page = workspace(390, 844)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # The five preferences in one row ("both bad"/"both good" have a row of their own).
    preferences = page.locator(".choice:not(.choice-outcome)").all()
    tops = {round(box["y"]) for box in (c.bounding_box() for c in preferences)}
    assert len(preferences) == 5 and len(tops) == 1
    # The submit bar stays at the bottom of the screen while the form is in view.
    page.locator("#label-form").scroll_into_view_if_needed()
    bar = page.locator(".submit-bar").bounding_box()
    assert bar["y"] + bar["height"] <= 844 + 1


def test_the_skip_link_and_focus_reach_the_choices_before_the_account_menu(workspace):
    page = workspace(1440, 900)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Enter")
    order = []
    for _step in range(60):
        page.keyboard.press("Tab")
        order.append(
            page.evaluate(
                "() => { const el = document.activeElement;"
                " return el.name === 'preference' ? 'choice' : el.closest('.account') ? 'account'"
                " : el.closest('.topbar') ? 'topbar' : 'other'; }"
            )
        )
        if "choice" in order or "account" in order:
            break
    assert "choice" in order and "account" not in order and "topbar" not in order
