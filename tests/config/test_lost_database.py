"""A request that finds its database connection gone answers 503 with Retry-After (not 500),
and the next request reconnects. The connection is really killed, by the server."""

from __future__ import annotations

import pytest
from django.db import connection

from tests.conftest import api_client_for
from tests.factories import PairFactory


@pytest.mark.django_db(transaction=True)
def test_a_lost_connection_answers_503_and_the_next_request_reconnects(campaign, annotator_a):
    if connection.vendor != "postgresql":
        pytest.skip("kills the server-side backend of the connection (PostgreSQL)")
    PairFactory(campaign=campaign)
    client = api_client_for(annotator_a)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    killer = connection.copy()  # a second connection, with the same settings
    try:
        with killer.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        killer.close()

    response = client.post(f"/api/campaigns/{campaign.pk}/next")
    assert response.status_code == 503
    assert response["Retry-After"].isdigit()
    assert response.json()["code"] == "database_unavailable"

    response = client.post(f"/api/campaigns/{campaign.pk}/next")
    assert response.status_code == 200
