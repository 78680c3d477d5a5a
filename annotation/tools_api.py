"""REST API of the annotator tools (/api/tools/…): one APIView per action (STYLE.md §3).

Search, attach a result, run code, list languages, ask a model. Passing `assignment` (one of
the caller's own open assignments) stores what was done as Evidence on it.
"""

from __future__ import annotations

from django.conf import settings
from django.http import Http404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Assignment, CodeRun
from annotation.selectors import assignment_for_annotator
from annotation.services.tools import (
    code_run_create,
    code_run_for_user,
    code_run_wait,
    evidence_attach,
    llm_ask,
    tool_search,
    tools_allowed,
)
from annotation.tools import available_languages
from annotation.tools.search import MAX_K, MAX_QUERY_CHARS, backend_name
from core.requests import SignedInApiRequest
from core.serializers import StrictSerializer
from core.validation import DbIntegerField

MAX_WAIT_S = 15.0


class CanUseTools(permissions.BasePermission):
    message = "The annotator tools are for annotators and experts."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return tools_allowed(request.user)


class ToolsApiView(APIView):
    permission_classes = [permissions.IsAuthenticated, CanUseTools]


def _assignment(assignment_id: int | None, request: SignedInApiRequest) -> Assignment | None:
    if assignment_id is None:
        return None
    return assignment_for_annotator(assignment_id=assignment_id, user=request.user)


class SearchHitSerializer(serializers.Serializer):
    title = serializers.CharField()
    snippet = serializers.CharField(help_text="HTML: escaped text, matches in <mark>.")
    source = serializers.CharField()  # type: ignore[assignment]  # shadows Field.source
    score = serializers.FloatField()
    document_id = serializers.IntegerField(allow_null=True)


@extend_schema(summary="Search the campaign's corpus")
class SearchApi(ToolsApiView):
    class InputSerializer(serializers.Serializer):
        q = serializers.CharField(allow_blank=True, trim_whitespace=True, max_length=2000)
        k = serializers.IntegerField(required=False, default=10, min_value=1, max_value=MAX_K)
        corpus = DbIntegerField(required=False, allow_null=True, default=None)
        assignment = DbIntegerField(required=False, allow_null=True, default=None)

    class OutputSerializer(serializers.Serializer):
        query = serializers.CharField()
        backend = serializers.CharField()
        hits = SearchHitSerializer(many=True)

    @extend_schema(
        parameters=[
            OpenApiParameter("q", str, description='Web-search syntax: "phrase", -word, or.'),
            OpenApiParameter("k", int, description=f"Hits wanted (1–{MAX_K}, default 10)."),
            OpenApiParameter("corpus", int, description="Search one corpus only."),
            OpenApiParameter("assignment", int, description="Record as evidence on it."),
        ],
        responses={200: OutputSerializer, 409: dict, 429: dict, 502: dict},
    )
    def get(self, request: SignedInApiRequest) -> Response:
        serializer = self.InputSerializer(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        assignment = _assignment(data["assignment"], request)
        hits = tool_search(
            query=data["q"],
            k=data["k"],
            corpus_id=data["corpus"],
            assignment=assignment,
            user=request.user,
        )
        body = {"query": data["q"][:MAX_QUERY_CHARS], "backend": backend_name(), "hits": hits}
        return Response(self.OutputSerializer(body).data)


@extend_schema(summary="Attach evidence to an open assignment")
class EvidenceApi(ToolsApiView):
    """Attach a search result (or any cited source) to an open assignment."""

    class InputSerializer(StrictSerializer):
        assignment = DbIntegerField()
        document_id = DbIntegerField(required=False, allow_null=True, default=None)
        title = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)
        snippet = serializers.CharField(
            required=False, allow_blank=True, default="", max_length=4000
        )
        source = serializers.CharField(  # type: ignore[assignment]  # shadows Field.source
            required=False, allow_blank=True, default="", max_length=1000
        )
        query = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
        note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        kind = serializers.CharField()
        payload = serializers.JSONField()

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer, 409: dict})
    def post(self, request: SignedInApiRequest) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        assignment_id = data.pop("assignment")
        assignment = assignment_for_annotator(assignment_id=assignment_id, user=request.user)
        evidence = evidence_attach(assignment=assignment, **data)
        return Response(self.OutputSerializer(evidence).data, status=201)


class CodeRunOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField(help_text="queued, running, done or failed.")
    language = serializers.CharField()
    assignment = serializers.IntegerField(source="assignment_id", allow_null=True)
    result = serializers.JSONField(
        allow_null=True,
        help_text="When done: status (ok, error, timeout, memory_limit, output_limit, killed), "
        "exit_code, stdout, stderr, duration_ms, tests (pass, fail or null), message.",
    )
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    poll = serializers.SerializerMethodField()

    def get_poll(self, run: CodeRun) -> str:
        return reverse("api-tools-code-run", kwargs={"run_id": run.pk})


def _finished(run: CodeRun) -> bool:
    return run.status in (CodeRun.Status.DONE, CodeRun.Status.FAILED)


@extend_schema(summary="Run code in the sandbox")
class CodeRunCreateApi(ToolsApiView):
    """Run code in the sandbox. Waits up to `wait` seconds (default CODE_RUN_WAIT_S, 5) for the
    result: 200 with it, or 202 with the run to poll at `poll`."""

    class InputSerializer(StrictSerializer):
        language = serializers.CharField(max_length=20)
        code = serializers.CharField(trim_whitespace=False, max_length=256 * 1024)
        stdin = serializers.CharField(
            required=False,
            allow_blank=True,
            default="",
            trim_whitespace=False,
            max_length=1024 * 1024,
        )
        tests = serializers.CharField(
            required=False,
            allow_blank=True,
            default="",
            trim_whitespace=False,
            max_length=64 * 1024,
        )
        assignment = DbIntegerField(required=False, allow_null=True, default=None)
        wait = serializers.FloatField(
            required=False, allow_null=True, default=None, min_value=0, max_value=MAX_WAIT_S
        )

        def validate_language(self, value: str) -> str:
            languages = available_languages()
            if value not in languages:
                raise serializers.ValidationError(
                    f"not available here; choose one of: {', '.join(languages) or 'none'}"
                )
            return value

    @extend_schema(
        request=InputSerializer,
        responses={
            200: CodeRunOutputSerializer,
            202: CodeRunOutputSerializer,
            409: dict,
            429: dict,
        },
    )
    def post(self, request: SignedInApiRequest) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        assignment = _assignment(data["assignment"], request)
        run = code_run_create(
            user=request.user,
            language=data["language"],
            code=data["code"],
            stdin=data["stdin"],
            tests=data["tests"],
            assignment=assignment,
        )
        wait = data["wait"]
        if wait is None:
            wait = float(settings.ARBITER.get("CODE_RUN_WAIT_S", 5.0))
        run = code_run_wait(code_run_id=run.pk, timeout_s=min(wait, MAX_WAIT_S))
        return Response(CodeRunOutputSerializer(run).data, status=200 if _finished(run) else 202)


@extend_schema(summary="A code run's status and output")
class CodeRunDetailApi(ToolsApiView):
    @extend_schema(responses={200: CodeRunOutputSerializer, 404: dict})
    def get(self, request: SignedInApiRequest, run_id: int) -> Response:
        run = code_run_for_user(code_run_id=run_id, user=request.user)
        if run is None:
            raise Http404("No such code run.")
        return Response(CodeRunOutputSerializer(run).data)


@extend_schema(summary="Languages the code runner accepts")
class LanguagesApi(ToolsApiView):
    @extend_schema(responses={200: dict})
    def get(self, request: SignedInApiRequest) -> Response:
        return Response({"languages": available_languages()})


@extend_schema(summary="Ask the configured model about the pair")
class LlmAskApi(ToolsApiView):
    """Ask the configured model about the pair (as shown); logged as evidence. Off unless
    ARBITER_LLM_URL is set (503)."""

    class InputSerializer(StrictSerializer):
        assignment = DbIntegerField()
        question = serializers.CharField(max_length=4000)

    class OutputSerializer(serializers.Serializer):
        evidence = serializers.IntegerField(source="pk")
        model = serializers.CharField(source="payload.model")
        answer = serializers.CharField(source="payload.answer")

    @extend_schema(
        request=InputSerializer,
        responses={
            201: OutputSerializer,
            409: dict,
            429: dict,
            503: OpenApiResponse(description="Off."),
        },
    )
    def post(self, request: SignedInApiRequest) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        assignment = assignment_for_annotator(
            assignment_id=serializer.validated_data["assignment"], user=request.user
        )
        evidence = llm_ask(assignment=assignment, question=serializer.validated_data["question"])
        return Response(self.OutputSerializer(evidence).data, status=201)
