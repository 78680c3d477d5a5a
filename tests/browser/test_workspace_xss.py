from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.urls import reverse

from tests.browser_support import log_in_with_session, wait_for_next_pair
from tests.factories import CampaignFactory, PairFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[x](javascript:alert(1))",
    "<svg onload=alert(1)>",
    '<a href="http://evil.example/">evil raw link</a>',
    '<iframe src="http://evil.example/frame"></iframe>',
    "<body onload=alert(1)>",
    '<div style="background:url(http://evil.example/bg.png)">styled</div>',
    '<meta http-equiv="refresh" content="0;url=http://evil.example/">',
    '<link rel="stylesheet" href="http://evil.example/x.css">',
    "<details open ontoggle=alert(1)>",
    "<math><a xlink:href=javascript:alert(1)>m</a></math>",
]
CODE_FENCE = "```html\n</script><script>alert(1)</script>\n```"
REMOTE_IMAGE = "![tracking pixel](http://evil.example/pixel.png)"

# Every element the pair's own content produced, checked in the live DOM.
ACTIVE_CONTENT = """
() => {
  const found = [];
  const areas = document.querySelectorAll(
    "#pair .conversation, #pair .responses, #pair .pair-guideline, #guidelines"
  );
  for (const area of areas) {
    for (const el of area.querySelectorAll("*")) {
      const tag = el.tagName.toLowerCase();
      if (["script", "img", "iframe", "svg", "object", "embed", "link", "meta", "style",
           "form", "input", "math", "video", "audio"].includes(tag)) found.push("tag " + tag);
      for (const attr of el.attributes) {
        if (attr.name.startsWith("on") || ["style", "src", "srcset"].includes(attr.name)) {
          found.push(tag + " @" + attr.name);
        }
      }
      if (tag === "a" && el.hasAttribute("href") &&
          !/^(https?:|mailto:)/i.test(el.getAttribute("href"))) {
        found.push("href " + el.getAttribute("href"));
      }
    }
  }
  return found;
}
"""


def hostile_text(label: str) -> str:
    return "\n\n".join([f"{label} follows.", *PAYLOADS, CODE_FENCE, REMOTE_IMAGE])


def test_hostile_pairs_render_as_inert_text(
    page, browser_context, live_server, annotator_a, watched
):
    campaign = CampaignFactory(guidelines=hostile_text("Guidelines"))
    for n in range(2):
        PairFactory(
            campaign=campaign,
            conversation=[
                {"role": "user", "content": hostile_text(f"Prompt {n}")},
                {"role": "assistant", "content": "<script>alert('turn')</script>"},
                {"role": "user", "content": "And?"},
            ],
            response_a=hostile_text(f"Response A{n}"),
            response_b=hostile_text(f"Response B{n}"),
            annotation_guideline=hostile_text(f"Pair guideline {n}"),
        )
    log_in_with_session(browser_context, live_server, annotator_a)

    page.goto(live_server.url + reverse("campaign-detail", args=[campaign.pk]))
    page.wait_for_selector("#pair[data-assignment][data-ready]")
    page.click("#guidelines summary")
    first_pair = page.get_attribute("#pair", "data-assignment")
    checked_pairs = []
    for _ in range(2):
        # Once from the full page, once from the fragment htmx swapped in.
        page.wait_for_timeout(300)  # give any injected handler its chance to fire
        assert page.evaluate(ACTIVE_CONTENT) == []
        pair_text = page.inner_text("#pair")
        for payload in [*PAYLOADS, "</script><script>alert(1)</script>"]:
            assert payload in pair_text, f"{payload!r} is not shown as text"
        assert "[image: tracking pixel, not loaded]" in pair_text
        assert "<script>alert(1)</script>" in page.inner_text("#guidelines")
        checked_pairs.append(page.get_attribute("#pair", "data-assignment"))
        if len(checked_pairs) == 1:
            page.keyboard.press("Escape")  # focus leaves the guidelines' summary
            page.keyboard.press("3")
            page.keyboard.press("Enter")
            wait_for_next_pair(page, first_pair)

    assert len(set(checked_pairs)) == 2
    assert watched.dialogs == []
    server = urlsplit(live_server.url).netloc
    elsewhere = [url for url in watched.requests if urlsplit(url).netloc != server]
    assert elsewhere == [], f"requests left the page: {elsewhere}"
    assert page.evaluate("window.__cspViolations") == []
    assert watched.page_errors == []
