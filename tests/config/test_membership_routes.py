"""Every route that takes a campaign, pair, assignment or escalation id checks membership.

The test walks the URL conf and the OpenAPI schema: a route with an id in its path must have an
entry in ROUTES (what kind of access it needs, and the method to call it with), so a new route
cannot forget membership. For each entry, people outside the campaign are refused with 404 (or
403) and, where calling it changes nothing worth fearing, the people inside are not.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from drf_spectacular.generators import SchemaGenerator

from annotation.models import CampaignMember, ImportJob
from annotation.roles import Role
from annotation.services.assignments import assignment_next
from annotation.services.members import member_add
from reviewers.models import Escalation
from scoring.models import ExportSnapshot, Job, ModelVersion
from tests.factories import CampaignFactory, PairFactory, UserFactory
from tests.reviewers.factories import judged_pair, user_with_role

pytestmark = pytest.mark.django_db

# Kinds of access:
#   annotator       members who annotate (and site admins); others 404
#   expert          expert members (and site admins); other experts 404
#   campaign-admin  admin members of the campaign and site admins; others 404/403
#   site-admin      site admins only (the object names its campaign; no member may)
#   owner           the user's own object (a code run), whatever the campaign
ROUTES: dict[str, tuple[str, str]] = {
    # annotator pages and API
    "campaign-detail": ("annotator", "get"),
    "assignment-page": ("annotator", "get"),
    "assignment-label": ("annotator", "post"),
    "assignment-label-change": ("annotator", "post"),
    "assignment-skip": ("annotator", "post"),
    "api-next": ("annotator", "post"),
    "api-progress": ("annotator", "get"),
    "api-label": ("annotator", "post"),
    "api-skip": ("annotator", "post"),
    "api-model-view": ("annotator", "get"),
    "tools-code-run-detail": ("owner", "get"),
    "api-tools-code-run": ("owner", "get"),
    # experts
    "escalation-review": ("expert", "get"),
    "escalation-open": ("expert", "post"),
    "escalation-claim": ("expert", "post"),
    "escalation-release": ("expert", "post"),
    "escalation-adjudicate": ("expert", "post"),
    "escalation-promote-gold": ("expert", "post"),
    "api-escalation-detail": ("expert", "get"),
    "api-escalation-claim": ("expert", "post"),
    "api-escalation-release": ("expert", "post"),
    "api-escalation-adjudicate": ("expert", "post"),
    "api-rewrite-queue": ("expert", "get"),
    "api-pair-rewrites": ("expert", "post"),
    # admins of the campaign
    "campaign-members": ("campaign-admin", "get"),
    "campaign-members-change": ("campaign-admin", "post"),
    "campaign-member": ("campaign-admin", "post"),
    "api-campaign-members": ("campaign-admin", "get"),
    "api-campaign-member": ("campaign-admin", "delete"),
    "api-evaluation-set": ("campaign-admin", "delete"),
    "api-shared-evaluation-set": ("site-admin", "delete"),
    "import-page": ("campaign-admin", "get"),
    "import-job": ("campaign-admin", "get"),
    "campaign-agreement": ("campaign-admin", "get"),
    "annotator-quality": ("campaign-admin", "get"),
    "api-campaign-agreement": ("campaign-admin", "get"),
    "api-annotator-quality": ("campaign-admin", "get"),
    "api-labels-export": ("campaign-admin", "get"),
    "api-import": ("campaign-admin", "post"),
    "api-pair-gold": ("campaign-admin", "post"),
    "campaign-dashboard": ("campaign-admin", "get"),
    "dashboard-export-create": ("campaign-admin", "post"),
    "dashboard-curation-create": ("campaign-admin", "post"),
    "scoring-campaign-evaluations": ("campaign-admin", "get"),
    "scoring-evaluation-set-upload": ("campaign-admin", "post"),
    "scoring-campaign-models": ("campaign-admin", "get"),
    "scoring-model-rollback": ("campaign-admin", "post"),
    "scoring-retrain": ("campaign-admin", "post"),
    "api-exports": ("campaign-admin", "get"),
    "api-curations": ("campaign-admin", "post"),
    "api-evaluation-sets": ("campaign-admin", "post"),
    "api-model-versions": ("campaign-admin", "get"),
    "api-model-rollback": ("campaign-admin", "post"),
    "api-retrain": ("campaign-admin", "post"),
    # objects that name their campaign: its admins (tests/scoring/test_export_api.py downloads)
    "scoring-model-activate": ("campaign-admin", "post"),
    "scoring-job": ("campaign-admin", "get"),
    "scoring-job-cancel": ("campaign-admin", "post"),
    "api-export-download": ("campaign-admin", "get"),
    "api-model-activate": ("campaign-admin", "post"),
    "api-job": ("campaign-admin", "get"),
    "api-job-cancel": ("campaign-admin", "post"),
    "api-model-score": ("campaign-admin", "post"),
    "api-campaign-settings": ("site-admin", "get"),
}
REFUSED = {404, 403}


def _id_routes() -> dict[str, tuple[str, set[str]]]:
    """Named routes whose path carries an integer id: name -> (route, id kwargs)."""
    found: dict[str, tuple[str, set[str]]] = {}

    def walk(patterns: list[Any], prefix: str, ids: set[str], namespace: str | None) -> None:
        for entry in patterns:
            converters = getattr(entry.pattern, "converters", {})
            here = ids | {name for name, converter in converters.items() if name.endswith("_id")}
            route = prefix + str(entry.pattern)
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, route, here, entry.namespace or namespace)
            elif isinstance(entry, URLPattern) and here and entry.name and namespace is None:
                found[entry.name] = (route, here)

    walk(get_resolver().url_patterns, "", set(), None)
    return found


@pytest.fixture
def world():
    campaign = CampaignFactory(open_to_all=False, annotators_per_pair=3)
    other = CampaignFactory(open_to_all=False)
    people = {
        "member": user_with_role("mia"),
        "outsider": user_with_role("nia"),
        "expert": user_with_role("eve", Role.EXPERT),
        "outside_expert": user_with_role("xen", Role.EXPERT),
        "campaign_admin": UserFactory(username="cam"),
        "other_admin": UserFactory(username="oac"),
        "site_admin": user_with_role("ada", Role.ADMIN),
    }
    member_add(campaign=campaign, user=people["member"])
    member_add(campaign=campaign, user=people["expert"], role=CampaignMember.Role.EXPERT)
    member_add(campaign=campaign, user=people["campaign_admin"], role=CampaignMember.Role.ADMIN)
    member_add(campaign=other, user=people["other_admin"], role=CampaignMember.Role.ADMIN)
    member_add(campaign=other, user=people["outsider"])
    member_add(campaign=other, user=people["outside_expert"], role=CampaignMember.Role.EXPERT)
    disputed = judged_pair(campaign, [2, 0, -1])
    escalation = Escalation.objects.get(pair=disputed)
    PairFactory(campaign=campaign)
    assignment = assignment_next(campaign=campaign, annotator=people["member"])
    assert assignment is not None
    ids = {
        "campaign_id": campaign.pk,
        "assignment_id": assignment.pk,
        "escalation_id": escalation.pk,
        "pair_id": assignment.pair_id,
        "user_id": people["member"].pk,
        # An import job of the campaign, and a model job of the campaign with the same id.
        "job_id": Job.objects.create(
            pk=ImportJob.objects.create(
                pk=900_001, campaign=campaign, file="x", original_name="x"
            ).pk,
            campaign=campaign,
            kind=Job.Kind.TRAIN,
            status=Job.Status.SUCCEEDED,
        ).pk,
        "version_id": ModelVersion.objects.create(
            campaign=campaign, number=1, base="tiny", checkpoint="/nowhere"
        ).pk,
        # Refused before anyone reads it; test_export_api.py has the campaign admin's download.
        "export_id": ExportSnapshot.objects.create(
            job=Job.objects.create(
                campaign=campaign, kind=Job.Kind.EXPORT, status=Job.Status.SUCCEEDED
            ),
            campaign=campaign,
            version=1,
            format="jsonl",
        ).pk,
        "run_id": 999_999,
        "set_id": 999_999,
    }
    return people, ids


def _call(user, name: str, method: str, ids: dict[str, int]) -> int:  # noqa: ANN001
    _route, kwargs = _id_routes()[name]
    url = reverse(name, kwargs={key: ids[key] for key in kwargs})
    client = Client()
    client.force_login(user)
    return getattr(client, method)(url).status_code


def test_every_route_with_an_id_has_a_membership_entry():
    routes = _id_routes()
    assert len(routes) >= 40
    assert sorted(set(routes) - set(ROUTES)) == [], "add these routes to ROUTES"
    assert sorted(set(ROUTES) - set(routes)) == [], "these ROUTES entries no longer exist"


def test_every_api_operation_with_an_id_in_its_path_has_a_membership_entry():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    sample = "1"
    checked = 0
    for path in schema["paths"]:
        if "_id}" not in path:
            continue
        concrete = path
        while "{" in concrete:
            start = concrete.index("{")
            concrete = concrete[:start] + sample + concrete[concrete.index("}") + 1 :]
        name = resolve(concrete).url_name
        assert name in ROUTES, f"{path} ({name}) has no membership entry"
        checked += 1
    assert checked >= 25


def test_people_outside_the_campaign_are_refused_on_every_route(world):
    people, ids = world
    refused_wrongly = []
    for name, (kind, method) in ROUTES.items():
        outsiders = {
            "annotator": ["outsider"],
            "owner": ["outsider"],
            "expert": ["outside_expert", "outsider"],
            "campaign-admin": ["other_admin", "outsider", "expert"],
            "site-admin": ["campaign_admin", "outsider"],
        }[kind]
        for who in outsiders:
            status = _call(people[who], name, method, ids)
            if status not in REFUSED:
                refused_wrongly.append(f"{name} as {who}: {status}")
    assert not refused_wrongly, "\n".join(refused_wrongly)


def test_people_inside_the_campaign_reach_the_routes_that_read(world):
    people, ids = world
    insider = {
        "annotator": "member",
        "expert": "expert",
        "campaign-admin": "campaign_admin",
    }
    not_reached = []
    for name, (kind, method) in ROUTES.items():
        # Reads only (and the annotator's own assignment): a POST to retrain or export would
        # start jobs that are no part of this test.
        if kind not in insider or (method != "get" and kind != "annotator"):
            continue
        if name in ("api-model-view", "api-export-download"):
            # 404 until the annotator has submitted, or until the export has a file: not a
            # membership answer.
            continue
        # An assignment is its annotator's alone; site admins reach everything else.
        for who in (insider[kind],) if kind == "annotator" else (insider[kind], "site_admin"):
            status = _call(people[who], name, method, ids)
            if status in REFUSED:
                not_reached.append(f"{name} as {who}: {status}")
    assert not not_reached, "\n".join(not_reached)
