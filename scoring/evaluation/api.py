"""REST API for evaluation sets (admins only): upload, list and delete, per campaign or shared.

Uploads are read and stored exactly as the page does it (``evaluation_set_upload_file``: the
import parser's streaming limits, and the inline time limit across reading and storing); a file
that cannot be read, or not in time, is a 400 whose ``detail`` says where and why. Uploading
queues the evaluations that ready versions now lack; with the broker down the stored set is
still answered (its ``note`` says the evaluations follow once the queue is back).
"""

from __future__ import annotations

from typing import cast

from django.contrib.auth.models import User
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Campaign
from annotation.roles import Role, user_has_role
from annotation.selectors import campaign_for_admin
from core.paging import page_parameters, page_response
from core.serializers import StrictSerializer
from core.validation import UPLOAD_NAME_MAX
from scoring.evaluation.reading import evaluation_upload_bound
from scoring.evaluation.selectors import evaluation_set_for_admin, evaluation_sets_listed
from scoring.evaluation.services import evaluation_set_delete, evaluation_set_upload_file
from scoring.models import EvaluationSet


class EvaluationResultSerializer(serializers.Serializer):
    model_version = serializers.IntegerField(source="model_version_id")
    version = serializers.IntegerField(source="model_version.number")
    accuracy = serializers.FloatField()
    ci_low = serializers.FloatField()
    ci_high = serializers.FloatField()
    n = serializers.IntegerField()
    subsets = serializers.JSONField(help_text="{subset: {accuracy, n, ci_low, ci_high}}")


class EvaluationSetOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    campaign = serializers.IntegerField(source="campaign_id", allow_null=True)
    shared = serializers.SerializerMethodField()
    filename = serializers.CharField()
    pairs_count = serializers.IntegerField()
    subsets = serializers.JSONField(help_text="{subset: pairs}")
    sha256 = serializers.CharField()
    created_at = serializers.DateTimeField()
    results = EvaluationResultSerializer(many=True, source="results.all")

    def get_shared(self, evaluation_set: EvaluationSet) -> bool:
        return evaluation_set.campaign_id is None


class EvaluationSetUploadOutputSerializer(EvaluationSetOutputSerializer):
    note = serializers.SerializerMethodField(
        help_text="Empty; or, when the task queue was unavailable, that the set is stored and "
        "its evaluations will be queued once the queue is back."
    )

    def get_note(self, _evaluation_set: EvaluationSet) -> str:
        return str(self.context.get("note", ""))


class EvaluationSetUploadSerializer(StrictSerializer):
    file = serializers.FileField(
        max_length=UPLOAD_NAME_MAX,
        help_text="RewardBench layout (prompt, chosen, rejected, subset) or chosen/rejected "
        "message lists; JSONL, JSON, CSV or Parquet, optionally gzipped.",
    )
    name = serializers.CharField(
        max_length=200, required=False, allow_blank=True, help_text="Default: the file's name."
    )


_UPLOAD_RESPONSES = {
    201: EvaluationSetUploadOutputSerializer,
    200: OpenApiResponse(
        EvaluationSetUploadOutputSerializer,
        description="A set of that name was replaced (or kept).",
    ),
    400: OpenApiResponse(
        description="The file cannot be read (or not within the inline time limit, reading and "
        "storing together); detail says where and why."
    ),
    404: OpenApiResponse(description="No such campaign, or not an admin."),
}


def _user(request: Request) -> User:
    # Signed in: IsAuthenticated, the default permission, let no one else through.
    return cast(User, request.user)


def _require_admin(request: Request) -> None:
    if not user_has_role(request.user, Role.ADMIN):
        raise Http404("Not found.")


def _listed(request: Request, campaign: Campaign | None) -> Response:
    """The sets by name, a page at a time (``core.paging``)."""
    return page_response(
        request,
        evaluation_sets_listed(campaign=campaign),
        order=("name", "id"),
        serialize=lambda rows: EvaluationSetOutputSerializer(rows, many=True).data,
    )


def _upload(request: Request, campaign: Campaign | None) -> Response:
    serializer = EvaluationSetUploadSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    upload = serializer.validated_data["file"]
    filename = upload.name or "evaluation.jsonl"
    name = (serializer.validated_data.get("name") or filename).strip()
    existed = EvaluationSet.objects.filter(campaign=campaign, name=name).exists()
    evaluation_set, note = evaluation_set_upload_file(
        campaign=campaign, name=name, upload=upload, filename=filename, user=_user(request)
    )
    listed = evaluation_sets_listed(campaign=campaign, own_only=True).get(pk=evaluation_set.pk)
    return Response(
        EvaluationSetUploadOutputSerializer(listed, context={"note": note}).data,
        status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED,
    )


@extend_schema_view(
    get=extend_schema(
        summary="The campaign's evaluation sets (its own and the shared ones)",
        parameters=page_parameters(),
        responses={200: EvaluationSetOutputSerializer(many=True)},
    ),
    post=extend_schema(
        summary="Upload an evaluation set for the campaign",
        request={"multipart/form-data": EvaluationSetUploadSerializer},
        responses=_UPLOAD_RESPONSES,
    ),
)
@evaluation_upload_bound
class CampaignEvaluationSetsApi(APIView):
    """GET: the sets the campaign's versions are evaluated on, with their results. POST: a
    file (multipart ``file``, optional ``name``); a set of the same name is replaced."""

    parser_classes = [MultiPartParser, FormParser]

    def get(self, request: Request, campaign_id: int) -> Response:
        return _listed(request, campaign_for_admin(campaign_id=campaign_id, user=_user(request)))

    def post(self, request: Request, campaign_id: int) -> Response:
        return _upload(request, campaign_for_admin(campaign_id=campaign_id, user=_user(request)))


@extend_schema(
    summary="Delete one of the campaign's evaluation sets",
    responses={204: None, 404: OpenApiResponse(description="No such set of this campaign.")},
)
class CampaignEvaluationSetApi(APIView):
    """DELETE a set of the campaign's own, with its results (shared sets: /evaluation-sets)."""

    def delete(self, request: Request, campaign_id: int, set_id: int) -> Response:
        campaign = campaign_for_admin(campaign_id=campaign_id, user=_user(request))
        evaluation_set = evaluation_set_for_admin(
            set_id=set_id, user=_user(request), campaign=campaign
        )
        evaluation_set_delete(evaluation_set=evaluation_set)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    get=extend_schema(
        summary="The shared evaluation sets",
        parameters=page_parameters(),
        responses={200: EvaluationSetOutputSerializer(many=True)},
    ),
    post=extend_schema(
        summary="Upload an evaluation set shared by every campaign",
        request={"multipart/form-data": EvaluationSetUploadSerializer},
        responses=_UPLOAD_RESPONSES,
    ),
)
@evaluation_upload_bound
class SharedEvaluationSetsApi(APIView):
    """Sets every campaign's versions are evaluated on; as the campaign's route otherwise."""

    parser_classes = [MultiPartParser, FormParser]

    def get(self, request: Request) -> Response:
        _require_admin(request)
        return _listed(request, None)

    def post(self, request: Request) -> Response:
        _require_admin(request)
        return _upload(request, None)


@extend_schema(
    summary="Delete a shared evaluation set",
    responses={204: None, 404: OpenApiResponse(description="No such shared set.")},
)
class SharedEvaluationSetApi(APIView):
    def delete(self, request: Request, set_id: int) -> Response:
        evaluation_set = evaluation_set_for_admin(set_id=set_id, user=_user(request), campaign=None)
        evaluation_set_delete(evaluation_set=evaluation_set)
        return Response(status=status.HTTP_204_NO_CONTENT)
