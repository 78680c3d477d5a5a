from __future__ import annotations

from itertools import islice
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from annotation.importers.parse import iter_pair_records
from tests.browser_support import log_in_with_session, wait_for_next_pair
from tests.conftest import HH_RLHF
from tests.factories import CampaignFactory, PairFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

CODE_RESPONSE = """Use a set to drop duplicates while keeping the **first** occurrence:

```python
def unique(items):
    seen = set()
    return [x for x in items if not (x in seen or seen.add(x))]
```

| input | output |
|---|---|
| `[1, 1, 2]` | `[1, 2]` |
"""


def multi_turn_hh_pair() -> dict:
    """A real hh-rlhf pair with at least two user turns, for a realistic page."""
    for record in islice(iter_pair_records(HH_RLHF), 200):
        if sum(turn["role"] == "user" for turn in record.conversation) >= 2:
            return {
                "conversation": list(record.conversation),
                "response_a": record.response_a,
                "response_b": record.response_b,
            }
    raise AssertionError("no multi-turn pair in the first 200 hh-rlhf rows")


def box(page, selector: str) -> dict:  # noqa: ANN001
    found = page.locator(selector).bounding_box()
    assert found is not None, f"{selector} is not visible"
    return found


def test_responses_sit_side_by_side_when_wide_and_stack_when_narrow(
    page, browser_context, live_server, annotator_a, watched
):
    campaign = CampaignFactory(
        guidelines="Prefer the response that is **helpful**, honest and harmless."
    )
    PairFactory(
        campaign=campaign,
        priority=2,
        annotation_guideline="Harmlessness first: a refusal may be the better answer.",
        **multi_turn_hh_pair(),
    )
    PairFactory(
        campaign=campaign,
        priority=1,
        conversation=[{"role": "user", "content": "How do I dedupe a list in Python?"}],
        response_a=CODE_RESPONSE,
        response_b="Call `list(set(items))`. It is the fastest way and keeps the order.",
    )
    log_in_with_session(browser_context, live_server, annotator_a)
    shots = Path(settings.VAR_DIR)
    shots.mkdir(parents=True, exist_ok=True)

    page.goto(live_server.url + reverse("campaign-detail", args=[campaign.pk]))
    page.wait_for_selector("#pair[data-assignment][data-ready]")
    left, right = box(page, "#response-a"), box(page, "#response-b")
    assert left["x"] + left["width"] <= right["x"]
    assert abs(left["y"] - right["y"]) < 1
    assert box(page, "#pair .tools")["height"] > 0
    page.screenshot(path=str(shots / "workspace-wide.png"), full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(100)
    left, right = box(page, "#response-a"), box(page, "#response-b")
    assert right["y"] >= left["y"] + left["height"]
    assert abs(left["x"] - right["x"]) < 1
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(shots / "workspace-narrow.png"), full_page=True)

    page.set_viewport_size({"width": 1440, "height": 900})
    first = page.get_attribute("#pair", "data-assignment")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    wait_for_next_pair(page, first)
    assert page.locator("#pair .code-block .k").count() > 0  # highlighted by class
    page.screenshot(path=str(shots / "workspace-code.png"), full_page=True)
    assert watched.page_errors == []
    assert page.evaluate("window.__cspViolations") == []


def test_the_login_and_home_pages_render(page, live_server, annotator_a, campaign):
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(live_server.url + reverse("login"))
    shots = Path(settings.VAR_DIR)
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "login.png"))
    page.fill("#id_username", "alice")
    page.fill("#id_password", "pw-alice")
    page.click("button[type=submit]")
    page.wait_for_selector(".campaign-grid")
    assert campaign.name in page.inner_text(".campaign-grid")
    page.screenshot(path=str(shots / "home.png"))
    page.click("text=Start judging")
    page.wait_for_selector("#pair")
    assert page.url.endswith(reverse("campaign-detail", args=[campaign.pk]))
