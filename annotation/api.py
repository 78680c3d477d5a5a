"""REST API for annotators and admins: one APIView per action (STYLE.md §3)."""

from __future__ import annotations

import functools
import json

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.http import StreamingHttpResponse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.drainage import set_override
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.errors import AlreadyFinished, InvalidLabel, LeaseExpired
from annotation.models import ImportJob
from annotation.roles import Role, user_roles_remember
from annotation.selectors import (
    assignment_for_annotator,
    campaign_for_admin,
    campaign_for_annotator,
    campaign_progress,
    labels_for_export,
    shown_pair,
)
from annotation.services.assignments import assignment_next, assignment_skip
from annotation.services.import_jobs import import_job_create, import_job_enqueue, import_job_run
from annotation.services.labels import FLAG_NAMES, LabelInput, label_submit


class TokenWithRolesAuthentication(TokenAuthentication):
    """DRF's token authentication, with the user's roles read in the same query.

    Every annotator call checks a role; reading the groups with the token saves a query per
    call on the hot path (next, label), and plain SQL saves compiling three subqueries.
    """

    def authenticate_credentials(self, key: str) -> tuple:
        token_model = self.get_model()
        params = [*(role.value for role in Role), key]
        users = get_user_model().objects.raw(_token_user_sql(token_model), params)
        user = next(iter(users), None)
        if user is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        user_roles_remember(user, [role for role in Role if getattr(user, f"has_{role.value}")])
        token = token_model(key=key, user=user)
        token._state.adding = False
        return (user, token)


@functools.cache
def _token_user_sql(token_model: type) -> str:
    quote = connection.ops.quote_name
    user_model = get_user_model()
    groups = user_model._meta.get_field("groups")
    user_pk = quote(user_model._meta.pk.column)
    member_user, member_group = quote(groups.m2m_column_name()), quote(groups.m2m_reverse_name())
    memberships = quote(groups.remote_field.through._meta.db_table)
    group_table = quote(Group._meta.db_table)
    role_check = (
        "EXISTS (SELECT 1 FROM {memberships} m JOIN {groups} g ON g.id = m.{group}"
        " WHERE m.{user} = u.{pk} AND g.name = %s) AS has_{role}"
    )
    role_checks = ", ".join(
        role_check.format(
            memberships=memberships,
            groups=group_table,
            group=member_group,
            user=member_user,
            pk=user_pk,
            role=role.value,
        )
        for role in Role
    )
    return (
        f"SELECT u.*, {role_checks} FROM {quote(token_model._meta.db_table)} t"  # noqa: S608
        f" JOIN {quote(user_model._meta.db_table)} u ON u.{user_pk} = t.user_id"
        " WHERE t.key = %s"
    )


# Same header, same "tokenAuth" security scheme in the OpenAPI schema as DRF's class.
set_override(TokenWithRolesAuthentication, "suppress_collision_warning", True)

# The project's defaults (token, then session), with roles loaded alongside the token.
AUTHENTICATION_CLASSES = [TokenWithRolesAuthentication, SessionAuthentication]


class TurnSerializer(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField()


class ShownPairSerializer(serializers.Serializer):
    conversation = TurnSerializer(many=True)
    response_a = serializers.CharField()
    response_b = serializers.CharField()
    annotation_guideline = serializers.CharField()
    task_category = serializers.CharField()


class AssignmentOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    campaign = serializers.IntegerField(source="campaign_id")
    status = serializers.CharField()


class NextOutputSerializer(serializers.Serializer):
    assignment = AssignmentOutSerializer()
    pair = ShownPairSerializer()
    lease_expires_at = serializers.DateTimeField()


def next_payload(assignment) -> dict:  # noqa: ANN001 - an Assignment
    return {
        "assignment": assignment,
        "pair": shown_pair(assignment),
        "lease_expires_at": assignment.lease_expires_at,
    }


class CampaignNextApi(APIView):
    authentication_classes = AUTHENTICATION_CLASSES

    @extend_schema(
        request=None,
        responses={200: NextOutputSerializer, 204: OpenApiResponse(description="No work left.")},
    )
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = campaign_for_annotator(campaign_id=campaign_id, user=request.user)
        assignment = assignment_next(campaign=campaign, annotator=request.user)
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(NextOutputSerializer(next_payload(assignment)).data)


class LabelApi(APIView):
    authentication_classes = AUTHENTICATION_CLASSES

    class InputSerializer(serializers.Serializer):
        preference = serializers.IntegerField(min_value=-2, max_value=2)
        rationale = serializers.CharField(required=False, allow_blank=True, default="")
        confidence = serializers.IntegerField(
            required=False, allow_null=True, min_value=1, max_value=5
        )
        flags = serializers.ListField(
            child=serializers.ChoiceField(choices=FLAG_NAMES), required=False, default=list
        )
        seconds_spent = serializers.FloatField(required=False, allow_null=True, min_value=0)

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        assignment = serializers.IntegerField(source="assignment_id")
        preference = serializers.IntegerField(
            help_text="In the orientation shown to the annotator."
        )

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request: Request, assignment_id: int) -> Response:
        assignment = assignment_for_annotator(
            assignment_id=assignment_id, user=request.user, with_pair=False
        )
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        label_input = LabelInput(
            preference=data["preference"],
            rationale=data["rationale"],
            confidence=data.get("confidence"),
            flags=tuple(data["flags"]),
            seconds_spent=data.get("seconds_spent"),
        )
        try:
            label = label_submit(assignment=assignment, data=label_input)
        except InvalidLabel as exc:
            return Response({"detail": str(exc), "code": exc.code}, status=400)
        except (LeaseExpired, AlreadyFinished) as exc:
            return Response({"detail": str(exc), "code": exc.code}, status=409)
        shown = {"id": label.pk, "assignment_id": assignment.pk, "preference": data["preference"]}
        return Response(self.OutputSerializer(shown).data, status=201)


class SkipApi(APIView):
    authentication_classes = AUTHENTICATION_CLASSES

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request, assignment_id: int) -> Response:
        assignment = assignment_for_annotator(
            assignment_id=assignment_id, user=request.user, with_pair=False
        )
        try:
            assignment_skip(assignment=assignment)
        except AlreadyFinished as exc:
            return Response({"detail": str(exc), "code": exc.code}, status=409)
        return Response(status=204)


class ProgressApi(APIView):
    authentication_classes = AUTHENTICATION_CLASSES

    @extend_schema(responses={200: dict})
    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = campaign_for_annotator(campaign_id=campaign_id, user=request.user)
        return Response(campaign_progress(campaign=campaign, user=request.user))


class LabelsExportApi(APIView):
    authentication_classes = AUTHENTICATION_CLASSES

    @extend_schema(responses={200: OpenApiResponse(description="JSON Lines, one label a line.")})
    def get(self, request: Request, campaign_id: int) -> StreamingHttpResponse:
        campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
        lines = (json.dumps(row) + "\n" for row in labels_for_export(campaign=campaign))
        response = StreamingHttpResponse(lines, content_type="application/jsonl")
        response["Content-Disposition"] = (
            f'attachment; filename="campaign-{campaign.pk}-labels.jsonl"'
        )
        return response


class ImportApi(APIView):
    """Upload a file of pairs; small files import at once, large ones as a Celery job."""

    authentication_classes = AUTHENTICATION_CLASSES
    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField()
        as_gold = serializers.BooleanField(required=False, default=False)

    @extend_schema(request=InputSerializer, responses={201: dict, 202: dict, 400: dict})
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data["file"]
        job = import_job_create(
            campaign=campaign,
            upload=upload,
            as_gold=serializer.validated_data["as_gold"],
            user=request.user,
        )
        if upload.size > settings.ARBITER["IMPORT_INLINE_MAX_BYTES"]:
            import_job_enqueue(job=job)
            return Response({"job": job.pk, "status": job.status}, status=202)
        job = import_job_run(job_id=job.pk)
        body = {
            "job": job.pk,
            "status": job.status,
            "created": job.created_count,
            "duplicates": job.duplicate_count,
        }
        if job.status == ImportJob.Status.FAILED:
            return Response({**body, "detail": job.error, "line": job.error_line}, status=400)
        return Response(body, status=201)
