"""Alpha per aspect, checked against the `krippendorff` package."""

from __future__ import annotations

import random

import krippendorff
import numpy as np
import pytest
from django.test import Client
from django.urls import reverse

from annotation.aspects import Aspect
from annotation.models import Assignment
from annotation.roles import Role, role_groups
from reviewers.agreement.aspects import aspect_agreement, aspect_alphas
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory, UserFactory

HELPFULNESS = Aspect("helpfulness", "Helpfulness", 1, 5)
HONESTY = Aspect("honesty", "Honesty", 0, 2)


def _reliability(ratings, aspect, coders, pair_ids):
    """coders x units ((pair, side) in sorted order), NaN where a coder gave no rating."""
    units = [(pair_id, side) for pair_id in sorted(pair_ids) for side in ("a", "b")]
    data = np.full((len(coders), len(units)), np.nan)
    for coder_index, coder in enumerate(coders):
        for pair_id, label_ratings in ratings[coder]:
            for side, value in (label_ratings.get(aspect.name) or {}).items():
                data[coder_index, units.index((pair_id, side))] = value
    # Units nobody rated do not matter to alpha; drop them as our counts never hold them.
    return data[:, ~np.all(np.isnan(data), axis=0)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_alpha_per_aspect_matches_the_krippendorff_package(seed):
    rng = random.Random(seed)
    coders = ["x", "y", "z", "w"]
    pair_ids = list(range(1, 31))
    ratings: dict[str, list] = {coder: [] for coder in coders}
    for pair_id in pair_ids:
        truth = rng.randint(1, 5)
        for coder in coders:
            if rng.random() < 0.25:
                continue  # this coder never labelled the pair
            label = {}
            if rng.random() < 0.9:
                noisy = min(5, max(1, truth + rng.choice([-1, 0, 0, 1])))
                label["helpfulness"] = {"a": noisy, "b": rng.randint(1, 5)}
            if rng.random() < 0.7:
                label["honesty"] = {"b": rng.randint(0, 2)}
            ratings[coder].append((pair_id, label))
    flat = [row for coder in coders for row in ratings[coder]]
    report = {entry["name"]: entry for entry in aspect_alphas(flat, [HELPFULNESS, HONESTY])}
    for aspect in (HELPFULNESS, HONESTY):
        data = _reliability(ratings, aspect, coders, pair_ids)
        for level in ("interval", "ordinal"):
            expected = krippendorff.alpha(
                reliability_data=data,
                level_of_measurement=level,
                value_domain=list(aspect.points),
            )
            assert report[aspect.name][f"alpha_{level}"] == pytest.approx(expected, abs=1e-9)


def test_an_aspect_nobody_rated_twice_has_no_alpha():
    report = aspect_alphas([(1, {"helpfulness": {"a": 3}})], [HELPFULNESS])
    assert report[0]["alpha_interval"] is None
    assert report[0]["undefined_reason"] == "no_pairable_units"


@pytest.mark.django_db
def test_the_agreement_api_reports_alpha_per_aspect_of_submitted_labels(admin_user):
    campaign = CampaignFactory(
        aspects=[{"name": "helpfulness", "label": "Helpfulness", "scale_min": 1, "scale_max": 5}]
    )
    given = {  # per annotator, per pair: (shown a, shown b)
        0: [(5, 1), (4, 2), (2, 2)],
        1: [(4, 1), (5, 3), (1, 2)],
        2: [(5, 2), (3, 1), (2, 3)],
    }
    pairs = PairFactory.create_batch(3, campaign=campaign)
    annotators = UserFactory.create_batch(3)
    for user in annotators:
        user.groups.add(role_groups()[Role.ANNOTATOR])
    canonical: dict[int, list] = {index: [] for index in given}
    for index, user in enumerate(annotators):
        client = api_client_for(user)
        for a, b in given[index]:
            body = client.post(f"/api/campaigns/{campaign.pk}/next").json()
            assignment = Assignment.objects.get(pk=body["assignment"]["id"])
            response = client.post(
                f"/api/assignments/{assignment.pk}/label",
                {"preference": 1, "aspect_ratings": {"helpfulness": {"a": a, "b": b}}},
                format="json",
            )
            assert response.status_code == 201
            sides = {"a": b, "b": a} if assignment.swapped else {"a": a, "b": b}
            canonical[index].append((assignment.pair_id, {"helpfulness": sides}))
    data = _reliability(
        {str(i): rows for i, rows in canonical.items()},
        HELPFULNESS,
        [str(i) for i in canonical],
        [pair.pk for pair in pairs],
    )
    expected = krippendorff.alpha(
        reliability_data=data, level_of_measurement="interval", value_domain=[1, 2, 3, 4, 5]
    )
    (entry,) = aspect_agreement(campaign=campaign)
    assert entry["alpha_interval"] == pytest.approx(expected)
    response = api_client_for(admin_user).get(f"/api/campaigns/{campaign.pk}/agreement")
    assert response.status_code == 200
    (reported,) = response.json()["aspects"]
    assert reported["name"] == "helpfulness" and reported["ratings"] == 18
    assert reported["alpha_interval"] == pytest.approx(expected)
    client = Client()
    client.force_login(admin_user)
    page = client.get(reverse("campaign-agreement", args=[campaign.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-testid="aspect-agreement"' in html and f"{expected:.3f}" in html
