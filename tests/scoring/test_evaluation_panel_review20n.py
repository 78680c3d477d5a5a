"""Review 20n: the evaluations panel and the interval at the ends of the scale."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from scoring.evaluation.maths import accuracy_report, report_from_counts, wilson_interval
from scoring.models import EvaluationResult, EvaluationSet, ModelVersion


@pytest.mark.parametrize("n", [1, 2, 3, 6, 7, 10, 12, 100, 1001])
def test_the_interval_reaches_the_end_of_the_scale_at_none_or_all_correct(n: int) -> None:
    """Rounding left ci_low at 5.6e-17 for 0 of 3 and ci_high at 1 - 1.1e-16 for 10 of 10: an
    interval that does not hold its own accuracy of 1.0 (API, evaluate_model's JSON)."""
    assert wilson_interval(0, n)[0] == 0.0
    assert wilson_interval(n, n)[1] == 1.0
    for correct in range(n + 1) if n <= 100 else (0, 1, n // 2, n - 1, n):
        low, high = wilson_interval(correct, n)
        assert 0.0 <= low <= correct / n <= high <= 1.0


def test_a_report_of_all_right_and_all_wrong_subsets_holds_its_accuracies() -> None:
    report: dict[str, Any] = accuracy_report([0.9] * 10 + [0.1] * 3, ["right"] * 10 + ["wrong"] * 3)
    subsets = report["subsets"]
    assert subsets["right"]["accuracy"] == 1.0 and subsets["right"]["ci_high"] == 1.0
    assert subsets["wrong"]["accuracy"] == 0.0 and subsets["wrong"]["ci_low"] == 0.0
    assert report_from_counts({"x": [1, 1]})["ci_high"] == 1.0


@pytest.mark.parametrize("subset", ["items", "keys", "values", "get"])
def test_a_subset_named_like_a_dict_method_shows_in_the_panel(
    campaign, admin_user, subset: str
) -> None:
    """The panel's template read ``result.subsets.items``: a subset called "items" was looked up
    as a key instead of the method, and the model page's panel was a 500."""
    version = ModelVersion.objects.create(
        campaign=campaign, number=1, base="tiny", checkpoint="/nonexistent"
    )
    evaluation_set = EvaluationSet.objects.create(
        campaign=campaign,
        name="bench",
        sha256="0" * 64,
        pairs_count=5,
        subsets={subset: 4, "chat": 1},
    )
    report: dict[str, Any] = accuracy_report(
        [0.9, 0.9, 0.9, 0.2, 0.8], [subset, subset, subset, subset, "chat"]
    )
    EvaluationResult.objects.create(
        model_version=version,
        evaluation_set=evaluation_set,
        set_sha256="0" * 64,
        accuracy=report["accuracy"],
        n=report["n"],
        ci_low=report["ci_low"],
        ci_high=report["ci_high"],
        subsets=report["subsets"],
    )
    page = Client()
    page.force_login(admin_user)
    response = page.get(
        reverse("scoring-campaign-evaluations", args=[campaign.pk]), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert f"<li>{subset}: 0.750" in html and "n = 4" in html
    assert "<li>chat: 1.000" in html
