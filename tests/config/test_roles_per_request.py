"""A signed-in browser's roles are read once per request; elsewhere every check asks.

Before, each role check of a page (navigation, the view's access rule, its selectors) was
a query of its own: six on the home page, more on the expert queue."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotation.roles import Role, role_groups, user_has_role
from tests.factories import CampaignFactory, UserFactory
from tests.reviewers.factories import user_with_role

pytestmark = pytest.mark.django_db


def _role_queries(queries) -> int:  # noqa: ANN001 - captured query dicts
    return sum('"auth_group"' in query["sql"] for query in queries)


@pytest.mark.parametrize("path", ["/", "/experts/queue/", "/no-such-page/"])
def test_a_session_page_reads_the_viewers_roles_in_one_query(client, path):
    CampaignFactory()
    viewer = user_with_role("viewer", Role.EXPERT)
    client.force_login(viewer, backend="django.contrib.auth.backends.ModelBackend")
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code in (200, 404)
    assert _role_queries(queries.captured_queries) == 1


def test_the_roles_read_once_are_the_viewers_own(client):
    """The expert queue is hidden from an annotator and open to an expert."""
    annotator = user_with_role("annotator1", Role.ANNOTATOR)
    client.force_login(annotator, backend="django.contrib.auth.backends.ModelBackend")
    assert client.get("/experts/queue/").status_code == 404  # not theirs: not shown
    expert = user_with_role("expert1", Role.EXPERT)
    client.force_login(expert, backend="django.contrib.auth.backends.ModelBackend")
    assert client.get("/experts/queue/").status_code == 200


def test_a_user_outside_a_request_sees_a_role_given_after_a_check():
    user = UserFactory()
    assert not user_has_role(user, Role.EXPERT)
    user.groups.add(role_groups()[Role.EXPERT])
    assert user_has_role(user, Role.EXPERT)


def test_an_anonymous_request_reads_no_roles(client):
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/")
    assert response.status_code in (200, 302)
    assert _role_queries(queries.captured_queries) == 0
