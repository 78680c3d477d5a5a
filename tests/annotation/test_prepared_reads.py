"""The hot path's prepared reads give the same model instances as the ORM (PostgreSQL)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.http import Http404
from django.utils import timezone
from rest_framework.test import APIRequestFactory

from annotation.authentication import TokenWithRolesAuthentication
from annotation.models import Assignment, Campaign
from annotation.roles import Role, user_has_role
from annotation.selectors import assignment_for_annotator, campaign_for_annotator
from annotation.services.assignments import assignment_next, take_params, take_sql
from annotation.services.labels import LabelInput, label_submit
from annotation.services.users import user_create
from tests.factories import CampaignFactory, PairFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL path"),
]


def assert_same_fields(found, expected) -> None:
    assert type(found) is type(expected) and not found._state.adding
    for field in type(expected)._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(expected, field.attname), field.name


def test_an_assignment_and_its_campaign_read_prepared_equal_the_orms(annotator_a):
    campaign = CampaignFactory(
        escalation_rules={"disagreement_above": 0.5, "flags": ["unsafe"]},
        guidelines="Judge <b>carefully</b>.",
    )
    PairFactory(campaign=campaign)
    assignment = assignment_next(campaign=campaign, annotator=annotator_a)

    found = assignment_for_annotator(assignment_id=assignment.pk, user=annotator_a, with_pair=False)
    expected = Assignment.objects.select_related("campaign").get(pk=assignment.pk)
    assert_same_fields(found, expected)
    assert_same_fields(found.campaign, expected.campaign)
    assert found.campaign.escalation_rules == {"disagreement_above": 0.5, "flags": ["unsafe"]}
    assert found.lease_expires_at.tzinfo is not None
    assert_same_fields(
        campaign_for_annotator(campaign_id=campaign.pk, user=annotator_a),
        Campaign.objects.get(pk=campaign.pk),
    )


def test_someone_elses_assignment_or_a_missing_campaign_is_not_found(annotator_a, annotator_b):
    campaign = CampaignFactory()
    PairFactory(campaign=campaign)
    assignment = assignment_next(campaign=campaign, annotator=annotator_a)
    with pytest.raises(Http404, match="No such assignment"):
        assignment_for_annotator(assignment_id=assignment.pk, user=annotator_b, with_pair=False)
    with pytest.raises(Http404, match="No such campaign"):
        campaign_for_annotator(campaign_id=campaign.pk + 1000, user=annotator_a)


def test_the_token_user_read_prepared_equals_the_orms_with_its_roles():
    user, _password, token = user_create(username="tok", role=Role.EXPERT)
    request = APIRequestFactory().post("/", HTTP_AUTHORIZATION=f"Token {token}")
    found, _token = TokenWithRolesAuthentication().authenticate(request)
    assert_same_fields(found, get_user_model().objects.get(pk=user.pk))
    assert user_has_role(found, Role.EXPERT) and not user_has_role(found, Role.ANNOTATOR)


def test_the_hot_path_statements_are_prepared_and_planned_once(annotator_a):
    # Django turns psycopg's prepared statements off unless the settings ask for them. (On
    # tables this small any plan will do; the next test checks the take statement's plan.)
    campaign = CampaignFactory(annotators_per_pair=1)  # each label completes its pair
    PairFactory.create_batch(8, campaign=campaign)
    for _ in range(8):
        assignment = assignment_next(campaign=campaign, annotator=annotator_a)
        label_submit(assignment=assignment, data=LabelInput(preference=1))
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans FROM pg_prepared_statements")
        generic_plans = {" ".join(sql.split())[:20]: plans for sql, plans in cursor.fetchall()}
    assert generic_plans["WITH guard AS ( INSE"] >= 2  # the take statement
    assert generic_plans["WITH claimed AS ( UP"] >= 2  # the label submit
    assert generic_plans["SELECT preference, o"] >= 2  # the votes, under the pair's lock
    assert generic_plans["UPDATE annotation_pa"] >= 2  # the consensus stored


def test_the_take_statements_one_plan_walks_the_open_queue_index(annotator_a):
    # With the statuses bound as parameters, a plan made once for every call could not use
    # the partial index on open pairs: it sorted the whole campaign on each call instead.
    campaign = CampaignFactory()
    PairFactory.create_batch(3, campaign=campaign)
    params = take_params(campaign, annotator_a, timezone.now(), swapped=False)
    types = {"campaign": "bigint", "annotator": "bigint", "per_pair": "integer"}
    types.update(swapped="boolean", now="timestamptz", expires="timestamptz")
    sql = take_sql()
    for number, name in enumerate(params, start=1):
        sql = sql.replace(f"%({name})s", f"${number}")
    with connection.cursor() as cursor:  # inside the test's transaction, as SET LOCAL needs
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute("SET LOCAL enable_seqscan = off")  # tiny tables: scans would win
        cursor.execute(f"PREPARE take_check ({', '.join(types[name] for name in params)}) AS {sql}")
        try:
            cursor.execute(
                f"EXPLAIN EXECUTE take_check ({', '.join(['%s'] * len(params))})",
                list(params.values()),
            )
            plan = "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("DEALLOCATE take_check")
    assert "$1" in plan  # one plan for any values, not one for these values
    assert "pair_open_queue" in plan, plan


def test_prepared_statements_pass_through_execute_wrappers_and_the_query_log():
    from django.test.utils import CaptureQueriesContext

    from annotation.prepared_reads import fetch_one_prepared

    seen = []

    def wrapper(execute, sql, params, many, context):  # noqa: ANN001
        seen.append((sql, params, context["connection"] is connection))
        return execute(sql, params, many, context)

    with CaptureQueriesContext(connection) as queries, connection.execute_wrapper(wrapper):
        assert fetch_one_prepared("SELECT %s::int + 1", [41]) == (42,)
    assert seen == [("SELECT %s::int + 1", [41], True)]
    assert [query["sql"] for query in queries] == ["SELECT %s::int + 1 /* prepared */"]
