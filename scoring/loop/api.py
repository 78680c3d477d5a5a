"""REST API for the model registry, model jobs and judgment assistance (STYLE.md §3)."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.selectors import assignment_for_annotator, campaign_for_admin
from core.paging import page_parameters, page_response
from core.requests import SignedInApiRequest
from core.serializers import StrictSerializer
from scoring.jobs.runner import job_cancel
from scoring.loop.assistance import model_view_reveal
from scoring.loop.registry import (
    model_version_activate,
    model_version_rollback,
)
from scoring.loop.requests import loop_request
from scoring.loop.training import (
    base_model_check_access,
    job_params_for_campaign,
    training_settings_for,
)
from scoring.loop.training_fields import serializer_fields_for_settings
from scoring.loop.versions import (
    job_for_admin,
    job_log_tail,
    model_version_for_admin,
    model_versions_for_campaign,
)
from scoring.models import Job


class ModelVersionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.IntegerField()
    base = serializers.CharField()
    mode = serializers.CharField()
    checkpoint = serializers.CharField()
    heldout_accuracy = serializers.FloatField(allow_null=True)
    label_snapshot = serializers.JSONField()
    metrics = serializers.JSONField()
    status = serializers.CharField()
    is_active = serializers.BooleanField()
    job = serializers.IntegerField(source="job_id", allow_null=True)
    created_at = serializers.DateTimeField()


class JobSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    campaign = serializers.IntegerField(source="campaign_id")
    kind = serializers.CharField()
    status = serializers.CharField()
    progress = serializers.FloatField()
    message = serializers.CharField()
    error = serializers.CharField()
    result = serializers.JSONField()
    params = serializers.JSONField()
    attempts = serializers.IntegerField()
    cancel_requested = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    log = serializers.SerializerMethodField(help_text="The last 50 log lines, oldest first.")

    def get_log(self, job: Job) -> list[str]:
        return [line.message for line in job_log_tail(job=job, lines=50)]


def job_payload(job: Job) -> dict:
    return JobSerializer(job).data


@extend_schema(summary="The campaign's reward-model versions")
class ModelVersionsApi(APIView):
    """The campaign's versions, newest first, a page at a time (``core.paging``)."""

    @extend_schema(parameters=page_parameters(), responses={200: ModelVersionSerializer(many=True)})
    def get(self, request: SignedInApiRequest, campaign_id: int) -> Response:
        campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
        return page_response(
            request,
            model_versions_for_campaign(campaign=campaign),
            order=("-number", "-id"),
            serialize=lambda rows: ModelVersionSerializer(rows, many=True).data,
        )


@extend_schema(summary="Activate a model version")
class ModelVersionActivateApi(APIView):
    @extend_schema(request=None, responses={200: ModelVersionSerializer, 409: dict})
    def post(self, request: SignedInApiRequest, version_id: int) -> Response:
        version = model_version_for_admin(version_id=version_id, user=request.user)
        version = model_version_activate(version=version)
        return Response(ModelVersionSerializer(version).data)


@extend_schema(summary="Roll back to the previous model version")
class ModelVersionRollbackApi(APIView):
    @extend_schema(request=None, responses={200: ModelVersionSerializer, 409: dict})
    def post(self, request: SignedInApiRequest, campaign_id: int) -> Response:
        campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
        version = model_version_rollback(campaign=campaign)
        return Response(ModelVersionSerializer(version).data)


@extend_schema(summary="Retrain now (closes the open round)")
class RetrainApi(APIView):
    """ "Retrain now": close the round, train, score, prioritise, open the next round."""

    InputSerializer = type(
        "RetrainInputSerializer",
        (StrictSerializer,),
        {
            **serializer_fields_for_settings(),
            # Left out: the campaign's latest loop job's choice (``loop_options_for``).
            "prioritise": serializers.BooleanField(required=False),
            "retrieve_from_gold": serializers.BooleanField(required=False),
        },
    )

    @extend_schema(
        summary="The settings a retrain starts from",
        responses={200: OpenApiResponse(description="The training settings and their defaults.")},
    )
    def get(self, request: SignedInApiRequest, campaign_id: int) -> Response:
        """The settings a retrain starts from (defaults, or the campaign's last choice), with
        the loop options (``prioritise``, ``retrieve_from_gold``)."""
        campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
        return Response({"settings": training_settings_for(campaign=campaign)})

    @extend_schema(request=InputSerializer, responses={202: JobSerializer, 400: dict})
    def post(self, request: SignedInApiRequest, campaign_id: int) -> Response:
        campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = dict(serializer.validated_data)
        # What GET shows is what a retrain starts from: fields left out keep the campaign's
        # settings (its latest train or loop job's, and its latest loop's loop options), not
        # the global defaults.
        submitted = {name: value for name, value in values.items() if name in request.data}
        # A JobError is the handler's 400.
        base_model_check_access(
            base_model=submitted.get("base_model"), campaign=campaign, user=request.user
        )
        params = job_params_for_campaign(campaign=campaign, submitted=submitted)
        job = loop_request(campaign=campaign, user=request.user, params=params)
        return Response(job_payload(job), status=status.HTTP_202_ACCEPTED)


@extend_schema(summary="A model job's status and log")
class JobApi(APIView):
    @extend_schema(responses={200: JobSerializer})
    def get(self, request: SignedInApiRequest, job_id: int) -> Response:
        return Response(job_payload(job_for_admin(job_id=job_id, user=request.user)))


@extend_schema(summary="Cancel a model job")
class JobCancelApi(APIView):
    @extend_schema(request=None, responses={200: JobSerializer})
    def post(self, request: SignedInApiRequest, job_id: int) -> Response:
        job = job_cancel(job=job_for_admin(job_id=job_id, user=request.user))
        return Response(job_payload(job))


@extend_schema(summary="The active model's view of a judged pair")
class ModelViewApi(APIView):
    """The active model's view of a pair, after its annotator submitted (if the campaign
    reveals it); reading it records that it was shown."""

    class OutputSerializer(serializers.Serializer):
        model_version = serializers.IntegerField()
        active_version = serializers.BooleanField()
        p_a_better = serializers.FloatField(help_text="In the orientation shown.")
        reward_a = serializers.FloatField()
        reward_b = serializers.FloatField()
        prefers = serializers.CharField()
        confidence = serializers.FloatField()
        agrees_with_you = serializers.BooleanField(allow_null=True)

    @extend_schema(
        responses={200: OutputSerializer, 404: OpenApiResponse(description="Not available.")}
    )
    def get(self, request: SignedInApiRequest, assignment_id: int) -> Response:
        assignment = assignment_for_annotator(assignment_id=assignment_id, user=request.user)
        view = model_view_reveal(assignment=assignment)
        if view is None:
            raise Http404("The model's view is not available for this assignment.")
        return Response(self.OutputSerializer(view).data)
