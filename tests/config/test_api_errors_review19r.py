"""Every error the API answers has the one shape `{"detail", "code"}`: DRF's own refusals
(401, 404, 405, 413, 415, a JSON parse error) as well as the ApplicationError family, and what
Django refuses outside any API view (an unknown route under /api/, a form body over
DATA_UPLOAD_MAX_MEMORY_SIZE, a server error). The docs page answers OPTIONS without a 500."""

from __future__ import annotations

import pytest
from django.urls import get_resolver
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from config import error_views
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


def _assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == {"detail", "code"}, body
    assert body["code"] == code, body
    assert body["detail"], body
    return body


def test_drf_refusals_carry_a_code_beside_the_detail(settings, campaign, annotator_a):
    anonymous = APIClient()
    _assert_error(anonymous.post(f"/api/campaigns/{campaign.pk}/next"), 401, "not_authenticated")
    client = api_client_for(annotator_a)
    response = client.get(f"/api/campaigns/{campaign.pk}/next")
    _assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST, OPTIONS"
    _assert_error(
        client.post("/api/tools/evidence", data=b"{bad", content_type="application/json"),
        400,
        "parse_error",
    )
    _assert_error(
        client.post("/api/tools/evidence", data=b"x", content_type="text/plain"),
        415,
        "unsupported_media_type",
    )
    # Django's Http404 from a selector, and the code runner's own 404.
    _assert_error(client.post("/api/assignments/999999/skip"), 404, "not_found")
    _assert_error(client.get("/api/tools/code-runs/999999"), 404, "not_found")
    settings.ARBITER = {**settings.ARBITER, "API_MAX_JSON_BYTES": 64}
    response = client.post(
        "/api/tools/evidence", data=b'{"a": "' + b"x" * 100 + b'"}', content_type="application/json"
    )
    _assert_error(response, 413, "request_too_large")


def test_field_errors_keep_naming_their_fields(admin_user):
    response = api_client_for(admin_user).post("/api/campaigns", {"scale": "nope"}, format="json")
    assert response.status_code == 400
    assert "scale" in response.json()


def test_an_unknown_api_route_is_a_json_404_and_an_unknown_page_stays_html(annotator_a, client):
    api = api_client_for(annotator_a)
    for url in ("/api/nope", "/api/campaigns/", "/api/campaigns/abc"):
        body = _assert_error(api.get(url), 404, "not_found")
        assert url in body["detail"]
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_a_form_body_over_djangos_bound_is_a_json_400_on_the_api(settings, campaign, admin_user):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    client = api_client_for(admin_user)
    client.raise_request_exception = False
    response = client.post(
        f"/api/campaigns/{campaign.pk}/members",
        data="csv=" + "a" * 4096,
        content_type="application/x-www-form-urlencoded",
    )
    body = _assert_error(response, 400, "bad_request")
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in body["detail"]


def test_a_server_error_under_the_api_is_json(monkeypatch, campaign, annotator_a):
    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("annotation.api.campaign_progress", broken)
    client = api_client_for(annotator_a)
    client.raise_request_exception = False
    _assert_error(client.get(f"/api/campaigns/{campaign.pk}/progress"), 500, "server_error")
    assert get_resolver().resolve_error_handler(500) is error_views.server_error


def test_the_docs_page_answers_options_with_a_405_naming_its_methods(client):
    response = client.options("/api/docs/")
    assert response.status_code == 405, response.content[:300]
    assert response["Allow"] == "GET, HEAD"
    assert client.get("/api/docs/").status_code == 200
    assert client.head("/api/docs/").status_code == 200


def _operations() -> list[tuple[str, str, dict]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [
        (method.upper(), path, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]


def test_the_schema_documents_the_errors_every_call_may_answer_in_one_shape():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    error = schema["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"detail", "code"}
    missing = []
    for method, path, operation in _operations():
        responses = operation["responses"]
        expected = {"401"}
        if "requestBody" in operation:
            expected.add("400")
        if method != "GET":
            expected.add("403")
        if "{" in path:
            expected.add("404")
        missing += [f"{method} {path} {status}" for status in sorted(expected - set(responses))]
    assert missing == []
    operations = {(method, path): operation for method, path, operation in _operations()}
    # The conflicts the README lists for these calls.
    for method, path in [
        ("POST", "/api/assignments/{assignment_id}/label"),
        ("POST", "/api/assignments/{assignment_id}/skip"),
        ("POST", "/api/escalations/{escalation_id}/claim"),
        ("POST", "/api/escalations/{escalation_id}/release"),
        ("POST", "/api/escalations/{escalation_id}/adjudicate"),
        ("POST", "/api/campaigns/{campaign_id}/members"),
    ]:
        response = operations[(method, path)]["responses"]["409"]
        assert response["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
