"""The evaluation chart's legend under the site's CSP (style-src 'self'), in headless Chromium:
each set's swatch shows its line's colour, and the page causes no policy violation."""

from __future__ import annotations

import pytest

from annotation.roles import Role
from scoring.evaluation.selectors import COLOURS
from scoring.models import EvaluationResult, EvaluationSet, ModelVersion
from tests.browser_support import log_in_with_session
from tests.reviewers.factories import user_with_role

pytestmark = [pytest.mark.browser]


def _hex(rgb: str) -> str:
    """'rgb(47, 91, 234)' as '#2f5bea'."""
    parts = rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")
    return "#" + "".join(f"{int(part):02x}" for part in parts[:3])


def test_the_legend_shows_each_sets_colour_without_a_csp_violation(
    page, browser_context, live_server, campaign
):
    version = ModelVersion.objects.create(
        campaign=campaign, number=1, base="tiny", checkpoint="/nonexistent"
    )
    for name in ("helpfulness", "safety"):
        evaluation_set = EvaluationSet.objects.create(
            campaign=campaign, name=name, sha256="0" * 64, pairs_count=3
        )
        EvaluationResult.objects.create(
            model_version=version,
            evaluation_set=evaluation_set,
            set_sha256="0" * 64,
            accuracy=0.6,
            n=3,
            ci_low=0.3,
            ci_high=0.8,
        )
    log_in_with_session(browser_context, live_server, user_with_role("ada", Role.ADMIN))
    page.goto(f"{live_server.url}/scoring/campaigns/{campaign.pk}/models/")
    legend = page.locator("#evaluations .legend")
    legend.wait_for()
    assert legend.inner_text().split("·")[0].strip().endswith("helpfulness")
    swatches = legend.evaluate(
        """legend => Array.from(legend.children).map(swatch => {
          const painted = swatch.querySelector("rect") || swatch;
          const style = getComputedStyle(painted);
          return swatch.tagName.toLowerCase() === "svg" ? style.fill : style.color;
        })"""
    )
    # One swatch per set, in the colour of its line (a blocked style attribute left them all
    # in the text's colour).
    assert [_hex(colour) for colour in swatches] == list(COLOURS[:2])
    assert page.evaluate("window.__cspViolations") == []
