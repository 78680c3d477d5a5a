"""REST API for annotators and admins: one APIView per action (STYLE.md §3)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import User
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.aspects import parse_aspects
from annotation.import_views import import_upload_bound
from annotation.models import Campaign, ImportJob, Label, Outcome
from annotation.roles import Role, user_has_role
from annotation.selectors import (
    assignment_for_annotator,
    campaign_for_admin,
    campaign_for_annotator,
    campaign_progress,
    labels_for_export,
    shown_pair,
)
from annotation.services.assignments import assignment_next, assignment_skip
from annotation.services.campaigns import (
    CREATE_FIELDS,
    SETTINGS_FIELDS,
    CampaignUpdate,
    campaign_create,
    campaign_fixed_settings,
    campaign_update,
)
from annotation.services.import_jobs import (
    import_job_create,
    import_job_enqueue,
    import_job_run,
    import_job_runs_inline,
)
from annotation.services.labels import (
    FLAG_NAMES,
    SECONDS_SPENT_MAX,
    LabelInput,
    RewriteInput,
    label_change,
    label_submit,
)
from annotation.services.rewrites import REWRITE_MAX_CHARS, REWRITE_TOO_LONG
from core.errors import Forbidden, NotFound
from core.requests import SignedInApiRequest
from core.serializers import ErrorSerializer, StrictSerializer, typed_text_field
from core.validation import UPLOAD_NAME_MAX


class TurnSerializer(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField()


class ShownPairSerializer(serializers.Serializer):
    conversation = TurnSerializer(many=True)
    response_a = serializers.CharField()
    response_b = serializers.CharField()
    annotation_guideline = serializers.CharField()
    task_category = serializers.CharField()
    responses = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Ranking items only: the K responses in the order shown to you; a ranking "
        "names them by their index here.",
    )


class AssignmentOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    campaign = serializers.IntegerField(source="campaign_id")
    status = serializers.CharField()


class AspectOutSerializer(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # shadows Field.label
    scale_min = serializers.IntegerField()
    scale_max = serializers.IntegerField()


class JudgmentOptionsSerializer(serializers.Serializer):
    outcomes = serializers.ListField(
        child=serializers.CharField(), help_text="Values the label's outcome may take."
    )
    aspects = AspectOutSerializer(many=True, help_text="Rate each response on these.")
    allow_rewrites = serializers.BooleanField()


class NextOutputSerializer(serializers.Serializer):
    assignment = AssignmentOutSerializer()
    pair = ShownPairSerializer()
    judgment = JudgmentOptionsSerializer()
    lease_expires_at = serializers.DateTimeField()


def judgment_options(campaign: Campaign) -> dict[str, Any]:
    """What a label for this campaign may hold besides the preference."""
    return {
        "outcomes": [str(outcome) for outcome in campaign.allowed_outcomes],
        "aspects": [
            {
                "name": aspect.name,
                "label": aspect.label,
                "scale_min": aspect.scale_min,
                "scale_max": aspect.scale_max,
            }
            for aspect in (parse_aspects(campaign.aspects) if campaign.takes_aspect_ratings else [])
        ],
        "allow_rewrites": campaign.takes_rewrites,
    }


def next_payload(assignment) -> dict:  # noqa: ANN001 - an Assignment
    """The body of a 200 from next, as NextOutputSerializer documents it.

    Built as plain data: instantiating the nested serializers cost about a millisecond per
    call on the busiest endpoint. The renderer writes the datetime as DRF's field would.
    """
    pair = shown_pair(assignment)
    body: dict[str, Any] = {
        "assignment": {
            "id": assignment.pk,
            "campaign": assignment.campaign_id,
            "status": str(assignment.status),
        },
        "pair": {
            "conversation": [
                {"role": str(turn["role"]), "content": str(turn["content"])}
                for turn in pair["conversation"]
            ],
            "response_a": pair["response_a"],
            "response_b": pair["response_b"],
            "annotation_guideline": pair["annotation_guideline"],
            "task_category": pair["task_category"],
        },
        "judgment": judgment_options(assignment.campaign),
        "lease_expires_at": assignment.lease_expires_at,
    }
    if "responses" in pair:
        body["pair"]["responses"] = pair["responses"]
    return body


def _label_shown(label_id: int, assignment_id: int, label: LabelInput) -> dict[str, Any]:
    """The label as the annotator sent it (shown orientation), as OutputSerializer says."""
    return {
        "id": label_id,
        "assignment": assignment_id,
        "preference": label.preference,
        "ranking": label.ranking,
        "outcome": label.outcome,
    }


@extend_schema(summary="Lease the next pair to judge")
class CampaignNextApi(APIView):
    @extend_schema(
        request=None,
        responses={200: NextOutputSerializer, 204: OpenApiResponse(description="No work left.")},
    )
    def post(self, request: SignedInApiRequest, campaign_id: int) -> Response:
        campaign = campaign_for_annotator(campaign_id=campaign_id, user=request.user)
        assignment = assignment_next(campaign=campaign, annotator=request.user)
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(next_payload(assignment))


# The most entries a label's flags and aspect ratings take: more than any campaign asks for
# (12 aspects of 2 sides, 3 flags), so the service still words the errors.
_LABEL_ENTRIES_MAX = 64


class _RankingField(serializers.ListField):
    """A ranking as sent, checked by ``ranking_validate`` (in the service), which stops at the
    first fault and words it; DRF would first coerce every index of a body of a million."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        return data


class _ShortListField(serializers.ListField):
    """A ListField that refuses more than ``max_length`` items before validating any: DRF
    checks the length after every item, seconds of CPU for a body of a million numbers."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, list) and self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return super().to_internal_value(data)


class _ShortDictField(serializers.DictField):
    """A DictField that refuses more than ``max_keys`` keys before validating any."""

    default_error_messages = {"max_keys": "Ensure this object has no more than {max_keys} keys."}

    def __init__(self, *, max_keys: int, **kwargs: Any) -> None:
        self.max_keys = max_keys
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and len(data) > self.max_keys:
            self.fail("max_keys", max_keys=self.max_keys)
        return super().to_internal_value(data)


class RewriteInSerializer(StrictSerializer):
    # Kept as written: leading indentation (a code block) and a final newline are the answer's.
    text = typed_text_field(
        limit=REWRITE_MAX_CHARS,
        too_long=REWRITE_TOO_LONG,
        help_text="Kept as written.",
        trim_whitespace=False,
    )
    based_on = serializers.ChoiceField(
        choices=["a", "b"], help_text="The response (as shown) the rewrite started from."
    )


def _label_input(data: dict[str, Any]) -> LabelInput:
    rewrite = data.get("rewrite")
    ranking = data.get("ranking")
    return LabelInput(
        # Left out: 0 for a "both bad"/"both good" pair label, none for a ranking.
        preference=data.get("preference", 0 if ranking is None else None),
        ranking=ranking,
        rationale=data["rationale"],
        confidence=data.get("confidence"),
        flags=tuple(data["flags"]),
        seconds_spent=data.get("seconds_spent"),
        outcome=data["outcome"],
        aspect_ratings=data.get("aspect_ratings"),
        rewrite=RewriteInput(rewrite["text"], rewrite["based_on"]) if rewrite else None,
    )


@extend_schema_view(post=extend_schema(summary="Submit a label for a leased pair"))
class LabelApi(APIView):
    class InputSerializer(StrictSerializer):
        preference = serializers.IntegerField(
            min_value=-2,
            max_value=2,
            required=False,
            help_text="A/B campaigns: required for the outcome 'preference'; 0 (or left out) for "
            "the others.",
        )
        ranking = _RankingField(
            child=serializers.ListField(child=serializers.IntegerField()),
            required=False,
            help_text="Ranking campaigns: groups of shown response indices, best first "
            "([[2], [0, 1], [3]]: 2 best, 0 and 1 tied, 3 worst); every index exactly once.",
        )
        outcome = serializers.ChoiceField(
            choices=Outcome.values,
            default=Outcome.PREFERENCE,
            help_text="'both_bad' or 'both_good' (on scales with a tie) instead of a preference.",
        )
        aspect_ratings = _ShortDictField(
            child=_ShortDictField(
                child=serializers.IntegerField(allow_null=True), max_keys=_LABEL_ENTRIES_MAX
            ),
            max_keys=_LABEL_ENTRIES_MAX,
            required=False,
            help_text="{aspect: {a: n, b: n}}, a and b as shown; see the campaign's aspects.",
        )
        rewrite = RewriteInSerializer(
            required=False, help_text="A corrected answer (campaigns that allow rewrites)."
        )
        rationale = serializers.CharField(required=False, allow_blank=True, default="")
        confidence = serializers.IntegerField(
            required=False, allow_null=True, min_value=1, max_value=5
        )
        flags = _ShortListField(
            child=serializers.ChoiceField(choices=FLAG_NAMES),
            max_length=_LABEL_ENTRIES_MAX,
            required=False,
            default=list,
        )
        seconds_spent = serializers.FloatField(
            required=False, allow_null=True, min_value=0, max_value=SECONDS_SPENT_MAX
        )

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if (
                "ranking" not in attrs
                and attrs.get("outcome") == Outcome.PREFERENCE
                and "preference" not in attrs
            ):
                raise serializers.ValidationError({"preference": ["This field is required."]})
            return attrs

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        assignment = serializers.IntegerField(source="assignment_id")
        preference = serializers.IntegerField(
            allow_null=True, help_text="In the orientation shown to the annotator."
        )
        ranking = serializers.ListField(
            child=serializers.ListField(child=serializers.IntegerField()),
            allow_null=True,
            help_text="Ranking campaigns: as sent, in shown indices; null for A/B campaigns.",
        )
        outcome = serializers.CharField()

    @extend_schema(
        request=InputSerializer,
        responses={
            201: OutputSerializer,
            409: OpenApiResponse(
                ErrorSerializer, description="The lease expired, or the assignment is labelled."
            ),
        },
    )
    def post(self, request: SignedInApiRequest, assignment_id: int) -> Response:
        return Response(self._write(request, assignment_id, label_submit), status=201)

    @extend_schema(
        summary="Change your label (within the campaign's grace period)",
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            404: OpenApiResponse(description="Not your assignment."),
            409: OpenApiResponse(
                description="The grace period is over, an expert decided the pair, or the "
                "assignment has no label."
            ),
        },
    )
    def put(self, request: SignedInApiRequest, assignment_id: int) -> Response:
        """Same body as POST; the label's previous values are kept in its history."""
        return Response(self._write(request, assignment_id, label_change), status=200)

    def _write(
        self,
        request: SignedInApiRequest,
        assignment_id: int,
        write: Callable[..., Label],
    ) -> dict[str, Any]:
        """POST and PUT alike: the caller's assignment, the body, one write (``label_submit`` or
        ``label_change``), and plain data shaped as OutputSerializer documents it (see
        next_payload)."""
        assignment = assignment_for_annotator(
            assignment_id=assignment_id, user=request.user, with_pair=False
        )
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        label_input = _label_input(serializer.validated_data)
        label = write(assignment=assignment, data=label_input)
        return _label_shown(label.pk, assignment.pk, label_input)


@extend_schema(summary="Skip a leased pair")
class SkipApi(APIView):
    @extend_schema(
        request=None,
        responses={
            204: None,
            409: OpenApiResponse(
                ErrorSerializer,
                description="A qualifying member's gold check (`qualification_check`): answer it.",
            ),
        },
    )
    def post(self, request: SignedInApiRequest, assignment_id: int) -> Response:
        assignment = assignment_for_annotator(
            assignment_id=assignment_id, user=request.user, with_pair=False
        )
        assignment_skip(assignment=assignment)
        return Response(status=204)


@extend_schema(summary="Campaign progress: pairs by status, labels, yours")
class ProgressApi(APIView):
    @extend_schema(responses={200: dict})
    def get(self, request: SignedInApiRequest, campaign_id: int) -> Response:
        campaign = campaign_for_annotator(campaign_id=campaign_id, user=request.user)
        return Response(campaign_progress(campaign=campaign, user=request.user))


@extend_schema(summary="Download the campaign's raw labels (JSON Lines)")
class LabelsExportApi(APIView):
    @extend_schema(responses={200: OpenApiResponse(description="JSON Lines, one label a line.")})
    def get(self, request: SignedInApiRequest, campaign_id: int) -> StreamingHttpResponse:
        campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
        lines = (json.dumps(row) + "\n" for row in labels_for_export(campaign=campaign))
        response = StreamingHttpResponse(lines, content_type="application/jsonl")
        response["Content-Disposition"] = (
            f'attachment; filename="campaign-{campaign.pk}-labels.jsonl"'
        )
        return response


@extend_schema(summary="Import a file of pairs")
@import_upload_bound
class ImportApi(APIView):
    """Upload a file of pairs; small files import at once, large ones as a Celery job."""

    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(StrictSerializer):
        file = serializers.FileField(max_length=UPLOAD_NAME_MAX)
        as_gold = serializers.BooleanField(required=False, default=False)

    @extend_schema(request=InputSerializer, responses={201: dict, 202: dict, 400: dict, 413: dict})
    def post(self, request: SignedInApiRequest, campaign_id: int) -> Response:
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
        if import_job_runs_inline(job=job):
            job = import_job_run(job_id=job.pk, inline=True)
        if job.status == ImportJob.Status.QUEUED:  # costly, or another import under way
            import_job_enqueue(job=job)
            return Response({"job": job.pk, "status": job.status}, status=202)
        body = {
            "job": job.pk,
            "status": job.status,
            "created": job.created_count,
            "duplicates": job.duplicate_count,
            "made_gold": job.made_gold_count,
            "busy_gold": job.busy_gold_count,
        }
        if job.status == ImportJob.Status.FAILED:
            # Failed within the request: the file could not be read (ImportFormatError; other
            # errors are raised), as the README's import_format_error says.
            body.update(detail=job.error, line=job.error_line, code="import_format_error")
            return Response(body, status=400)
        return Response(body, status=201)


@extend_schema(summary="Create a campaign (site admins)")
class CampaignCreateApi(APIView):
    """A new campaign with its first settings; the rest keep their defaults (Django admin)."""

    # Strict: a ModelSerializer drops what CREATE_FIELDS lacks before campaign_create's own
    # check could see it ({"itemkind": "ranking"} made an A/B campaign).
    class InputSerializer(StrictSerializer, serializers.ModelSerializer):
        class Meta:
            model = Campaign
            fields: tuple[str, ...] = CREATE_FIELDS  # CampaignSettingsApi's takes more
            # The service says a name is taken, with a 409.
            extra_kwargs: dict[str, dict[str, Any]] = {"name": {"validators": []}}

    class OutputSerializer(serializers.ModelSerializer):
        class Meta:
            model = Campaign
            fields = ("id", *CREATE_FIELDS, "created_at")

    @extend_schema(
        request=InputSerializer,
        responses={201: OutputSerializer, 400: dict, 403: dict, 409: dict},
    )
    def post(self, request: SignedInApiRequest) -> Response:
        if not user_has_role(request.user, Role.ADMIN):
            raise Forbidden("only site administrators create campaigns")
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        campaign = campaign_create(created_by=request.user, **serializer.validated_data)
        return Response(self.OutputSerializer(campaign).data, status=status.HTTP_201_CREATED)


def _campaign_for_site_admin(*, campaign_id: int, user: User) -> Campaign:
    """The campaign, for a site admin (a session or an admin's token); 403 for anyone else,
    whether or not the campaign exists (no probing), and 404 for a site admin if it does not.
    Its settings are the Django admin's, which only site admins reach: admin members of the
    campaign have its members, imports and exports, not these."""
    if not user_has_role(user, Role.ADMIN):
        raise Forbidden("only site administrators read and change a campaign's settings")
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        raise NotFound("No such campaign.")
    return campaign


class CampaignSettingsOutSerializer(serializers.ModelSerializer):
    locked_fields = serializers.SerializerMethodField(
        help_text="Settings that cannot change any more: item_kind and scale once the campaign "
        "has pairs. An aspect that labels rate keeps its name and scale (not listed here)."
    )

    class Meta:
        model = Campaign
        fields = ("id", *SETTINGS_FIELDS, "created_at", "locked_fields")

    def get_locked_fields(self, campaign: Campaign) -> list[str]:
        return list(self.context["locked_fields"])


def _settings_body(campaign: Campaign) -> dict[str, Any]:
    context = {"locked_fields": campaign_fixed_settings(campaign=campaign)}
    return dict(CampaignSettingsOutSerializer(campaign, context=context).data)


class OverlapChangeOutSerializer(serializers.Serializer):
    old = serializers.IntegerField()
    new = serializers.IntegerField()
    pairs_unsettled = serializers.IntegerField(
        help_text="Pairs in rounds, not yet settled: they take the new overlap."
    )
    pairs_one_more = serializers.IntegerField(
        help_text="Of those, pairs whose slots all held labels, N or more: one label more each."
    )
    pairs_changed = serializers.IntegerField(help_text="Of those, pairs whose cap changed.")
    pairs_settled_kept = serializers.IntegerField(
        help_text="Settled pairs: they keep their verdicts and labels."
    )


class SettingChangeOutSerializer(serializers.Serializer):
    old = serializers.JSONField()
    new = serializers.JSONField()


class CampaignSettingsChangeOutSerializer(serializers.Serializer):
    campaign = CampaignSettingsOutSerializer(help_text="The settings after the change.")
    changed = serializers.DictField(
        child=SettingChangeOutSerializer(),
        help_text="Each setting whose value changed: {old, new}. Values sent equal to the "
        "current ones are not listed.",
    )
    message = serializers.CharField(help_text="What changed, in words (as the admin says it).")
    annotators_per_pair_change = OverlapChangeOutSerializer(
        allow_null=True,
        help_text="When annotators_per_pair changed: what that did to the pairs in rounds.",
    )


def _change_body(result: CampaignUpdate) -> dict[str, Any]:
    overlap = result.overlap
    return {
        "campaign": _settings_body(result.campaign),
        "changed": {name: {"old": old, "new": new} for name, (old, new) in result.changed.items()},
        "message": result.message,
        "annotators_per_pair_change": None if overlap is None else dataclasses.asdict(overlap),
    }


class CampaignSettingsApi(APIView):
    """A campaign's settings, read and changed (site admins), as in the Django admin."""

    # The create API's serializer over every setting: the same field checks (types, choices,
    # lengths) and the same refusal of names it does not take; sent partially.
    class InputSerializer(CampaignCreateApi.InputSerializer):
        class Meta(CampaignCreateApi.InputSerializer.Meta):
            fields = SETTINGS_FIELDS

    @extend_schema(
        summary="A campaign's settings (site admins)",
        responses={
            200: CampaignSettingsOutSerializer,
            403: OpenApiResponse(description="Not a site admin."),
            404: OpenApiResponse(description="No such campaign."),
        },
    )
    def get(self, request: SignedInApiRequest, campaign_id: int) -> Response:
        campaign = _campaign_for_site_admin(campaign_id=campaign_id, user=request.user)
        return Response(_settings_body(campaign))

    @extend_schema(
        summary="Change a campaign's settings (site admins)",
        description="Send only the settings to change; all of them change, or none. Checked "
        "as at creation, the settings as a whole (e.g. both_bad_route 'rewrite' needs "
        "allow_rewrites). A new annotators_per_pair applies to the pairs in rounds not yet "
        "settled, as the admin applies it.",
        request=InputSerializer,
        responses={
            200: CampaignSettingsChangeOutSerializer,
            400: OpenApiResponse(
                description="A bad value, naming its field ({field: [...]}, or detail "
                "'field: ...' with code invalid_campaign), or a field it does not take "
                "(unknown_field). Nothing changed."
            ),
            403: OpenApiResponse(description="Not a site admin."),
            404: OpenApiResponse(description="No such campaign."),
            409: OpenApiResponse(
                description="A name in use (campaign_exists); item_kind or scale once the "
                "campaign has pairs, or an aspect labels rate dropped or rescaled "
                "(campaign_setting_locked); item_kind, scale or annotators_per_pair "
                "changed since the request read it (campaign_changed: read and retry). "
                "Nothing changed."
            ),
        },
    )
    def patch(self, request: SignedInApiRequest, campaign_id: int) -> Response:
        campaign = _campaign_for_site_admin(campaign_id=campaign_id, user=request.user)
        serializer = self.InputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        result = campaign_update(campaign=campaign, **serializer.validated_data)
        return Response(_change_body(result))
