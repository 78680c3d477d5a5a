"""REST API for agreement, the expert queue, adjudication, gold pairs and annotator quality.

One APIView per action with nested Input/Output serializers (STYLE.md §3). Experts and admins
use the escalation endpoints; agreement, quality and gold are for admins. Everyone else gets
404, as if the campaign or escalation did not exist.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.api import _RankingField
from annotation.selectors import campaign_for_admin
from annotation.services.rewrites import REWRITE_MAX_CHARS, REWRITE_TOO_LONG, rewrite_by_expert
from core.paging import (
    link_response,
    list_page_response,
    page_links,
    page_parameters,
    page_response,
)
from core.requests import SignedInApiRequest
from core.serializers import ErrorSerializer, StrictSerializer, typed_text_field
from core.validation import DbIntegerField
from reviewers.models import Adjudication
from reviewers.selectors.access import (
    campaign_for_expert,
    escalation_for_expert,
    pair_for_admin,
    pair_for_expert,
    require_expert,
)
from reviewers.selectors.quality import agreement_report, annotator_quality_report
from reviewers.selectors.queue import (
    claim_state,
    claim_states,
    escalation_queue,
    queue_page,
    rewrite_queue,
)
from reviewers.selectors.review import escalation_review
from reviewers.services.adjudications import (
    ADJUDICATION_NOTE_MAX_CHARS,
    NOTE_TOO_LONG,
    adjudication_resolve,
)
from reviewers.services.escalations import escalation_claim, escalation_release
from reviewers.services.gold import pair_mark_gold, pair_promote_gold


class AgreementSubsetSerializer(serializers.Serializer):
    alpha = serializers.FloatField(allow_null=True, help_text="null when undefined")
    ci_low = serializers.FloatField(allow_null=True)
    ci_high = serializers.FloatField(allow_null=True)
    n_pairs = serializers.IntegerField(help_text="Pairs with two or more regular labels.")
    undefined_reason = serializers.CharField(allow_null=True)


class AgreementRoundSerializer(AgreementSubsetSerializer):
    round_id = serializers.IntegerField(allow_null=True)
    number = serializers.IntegerField(allow_null=True)
    status = serializers.CharField(allow_null=True)
    below_target = serializers.BooleanField()


class AgreementCategorySerializer(AgreementSubsetSerializer):
    category = serializers.CharField(allow_blank=True)
    below_target = serializers.BooleanField()


class AgreementAnnotatorSerializer(serializers.Serializer):
    annotator_id = serializers.IntegerField()
    username = serializers.CharField()
    alpha = serializers.FloatField(
        allow_null=True,
        help_text="1 - D_o(annotator) / D_e(campaign); see reviewers.agreement.maths.",
    )
    n_pairs = serializers.IntegerField()
    undefined_reason = serializers.CharField(allow_null=True)
    below_target = serializers.BooleanField()


class DisputeSerializer(serializers.Serializer):
    pair_id = serializers.IntegerField()
    share = serializers.FloatField(help_text="The pair's share of the round's disagreement.")
    counts = serializers.DictField(child=serializers.IntegerField())


class DisputesSerializer(serializers.Serializer):
    round_id = serializers.IntegerField(allow_null=True)
    number = serializers.IntegerField(allow_null=True)
    pairs = DisputeSerializer(many=True)


class RetestAgreementSerializer(serializers.Serializer):
    n = serializers.IntegerField()
    agreeing = serializers.IntegerField()
    rate = serializers.FloatField(allow_null=True)


class AspectAgreementSerializer(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # shadows Field.label
    alpha_interval = serializers.FloatField(allow_null=True)
    alpha_ordinal = serializers.FloatField(allow_null=True)
    pairable_units = serializers.IntegerField(help_text="(pair, response) rated at least twice.")
    ratings = serializers.IntegerField()
    undefined_reason = serializers.CharField(allow_null=True)


@extend_schema(summary="Inter-annotator agreement (Krippendorff's alpha)")
class CampaignAgreementApi(APIView):
    class OutputSerializer(serializers.Serializer):
        campaign = serializers.IntegerField()
        level = serializers.ChoiceField(choices=["nominal", "ordinal"])
        level_note = serializers.CharField()
        target = serializers.FloatField()
        computed_at = serializers.CharField()
        overall = AgreementSubsetSerializer()
        rounds = AgreementRoundSerializer(many=True)
        categories = AgreementCategorySerializer(many=True)
        annotators = AgreementAnnotatorSerializer(many=True)
        disputes = DisputesSerializer()
        retest = RetestAgreementSerializer()
        aspects = AspectAgreementSerializer(many=True, help_text="Alpha per rated aspect.")
        rankings = serializers.JSONField(
            allow_null=True,
            help_text="Ranking campaigns: ordinal alpha over the rankings, {alpha, items, "
            "rounds: [{number, alpha, items}]}; the other figures compare response 0 with "
            "response 1. Null for A/B campaigns.",
        )

    @extend_schema(responses={200: OutputSerializer})
    def get(self, request: SignedInApiRequest, campaign_id: int) -> Response:
        campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
        report = agreement_report(campaign=campaign)
        return Response(self.OutputSerializer(report).data)


@extend_schema(summary="Annotator quality figures")
class AnnotatorQualityApi(APIView):
    class OutputSerializer(serializers.Serializer):
        annotator_id = serializers.IntegerField()
        username = serializers.CharField()
        labels = serializers.IntegerField()
        gold_checks = serializers.IntegerField()
        gold_accuracy = serializers.FloatField(allow_null=True)
        consensus_agreement = serializers.FloatField(allow_null=True)
        position_bias = serializers.FloatField(allow_null=True)
        position_bias_z = serializers.FloatField(allow_null=True)
        # Where position_bias would sit by chance: 0.5 for A/B pairs, 1/K for K responses.
        position_bias_chance = serializers.FloatField(allow_null=True)
        median_seconds = serializers.FloatField(allow_null=True)
        flagged = serializers.BooleanField()
        flag_reasons = serializers.ListField(child=serializers.CharField())

    @extend_schema(parameters=page_parameters(), responses={200: OutputSerializer(many=True)})
    def get(self, request: SignedInApiRequest, campaign_id: int) -> Response:
        """The annotators by user name, a page at a time (``core.paging``)."""
        campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
        # Stored by dashboards_refresh every minute, as the quality page reads it.
        return list_page_response(
            request,
            annotator_quality_report(campaign=campaign)["annotators"],
            key=lambda row: (row["username"], row["annotator_id"]),
            serialize=lambda rows: rows,
        )


class EscalationOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    campaign = serializers.IntegerField(source="campaign_id")
    pair = serializers.IntegerField(source="pair_id")
    reason = serializers.CharField()
    detail = serializers.CharField()
    disagreement = serializers.FloatField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()
    deadline = serializers.DateTimeField(allow_null=True)
    open_to_all_at = serializers.DateTimeField(
        allow_null=True, help_text="Until then only experts of the pair's task category see it."
    )
    claim = serializers.SerializerMethodField()

    def get_claim(self, escalation) -> dict:  # noqa: ANN001 - an Escalation
        # A page's states come read together (claim_states: the viewer's roles asked once).
        states = self.context.get("claim_states") or {}
        state = states.get(escalation.pk) or claim_state(escalation, viewer=self.context["viewer"])
        return {
            "held": state["held"],
            "mine": state["mine"],
            "holder": state["holder"],
            "expires_at": state["expires_at"].isoformat() if state["expires_at"] else None,
            "overdue": state["overdue"],
        }


@extend_schema(summary="Open escalations (the expert queue)")
class EscalationListApi(APIView):
    """A page of the expert queue, as the queue page pages it (``queue_page``: keyset, the
    cursors ``after``/``before`` being the sort key of the page's last or first row). The body
    stays a list of escalations; the neighbouring pages are in the ``Link`` header (RFC 8288,
    as GitHub's API gives them), their URLs keeping the order, campaign, domain and limit."""

    class FilterSerializer(serializers.Serializer):
        campaign = DbIntegerField(required=False)
        order = serializers.ChoiceField(choices=["oldest", "disputed"], default="oldest")
        domain = serializers.CharField(required=False, allow_blank=True, max_length=100)
        limit = serializers.IntegerField(min_value=1, max_value=500, default=100)
        after = serializers.CharField(required=False, allow_blank=True, max_length=100)
        before = serializers.CharField(required=False, allow_blank=True, max_length=100)
        # Deprecated: reads and discards every row before the page, and shifts when
        # escalations are decided between requests. Kept for existing scripts.
        offset = DbIntegerField(min_value=0, required=False)

        def validate(self, data: dict[str, Any]) -> dict[str, Any]:
            if "offset" in data and (data.get("after") or data.get("before")):
                raise serializers.ValidationError(
                    "Give offset (deprecated) or a cursor (after, before), not both."
                )
            return data

    @extend_schema(
        parameters=[
            OpenApiParameter("campaign", int),
            OpenApiParameter("order", str, enum=["oldest", "disputed"]),
            OpenApiParameter(
                "domain", str, description="Only escalations of pairs of this task category."
            ),
            *page_parameters(),  # limit, after, before and the Link header
            OpenApiParameter(
                "offset",
                int,
                deprecated=True,
                description="Rows to skip. Deprecated: slow on a deep page, and rows shift "
                "when escalations are decided between requests; such a page has no Link "
                "header. Not with after or before.",
            ),
        ],
        responses={200: EscalationOutputSerializer(many=True)},
    )
    def get(self, request: SignedInApiRequest) -> Response:
        require_expert(request.user)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        queue = escalation_queue(
            campaign_id=data.get("campaign"),
            order=data["order"],
            viewer=request.user,
            domain=data.get("domain") or None,
        )
        offset, limit = data.get("offset") or 0, data["limit"]
        links: dict[str, str] = {}
        if offset:
            rows = list(queue[offset : offset + limit])
        else:
            page = queue_page(
                queue,
                order=data["order"],
                size=limit,
                after=data.get("after") or None,
                before=data.get("before") or None,
            )
            rows = page.rows
            kept = {
                "order": data["order"],
                "campaign": data.get("campaign"),
                "domain": data.get("domain") or None,
                "limit": data["limit"],
            }
            links = page_links(request, page, kept=kept)
        states = {row.pk: state for row, state in claim_states(rows, viewer=request.user)}
        serializer = EscalationOutputSerializer(
            rows, many=True, context={"viewer": request.user, "claim_states": states}
        )
        return link_response(serializer.data, links)


class EvidenceSerializer(serializers.Serializer):
    kind = serializers.CharField()
    summary = serializers.CharField()


class ReviewLabelSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    name = serializers.CharField(help_text="'Annotator N': identities are hidden from experts.")
    username = serializers.CharField(allow_null=True, help_text="Shown to admins only.")
    preference = serializers.IntegerField(help_text="Canonical orientation (A and B as imported).")
    rationale = serializers.CharField(
        allow_blank=True,
        help_text="As written: it speaks of the responses as this annotator saw them "
        "(shown_first, display_order), not in canonical order.",
    )
    shown_first = serializers.CharField(
        help_text="Canonical side the annotator saw on the left, as 'A': 'a' or 'b'."
    )
    display_order = serializers.JSONField(
        allow_null=True,
        help_text="Ranking items: the canonical response index shown at each position "
        "(their 'Response 1' first); else null.",
    )
    confidence = serializers.IntegerField(allow_null=True)
    flags = serializers.ListField(child=serializers.CharField())
    kind = serializers.CharField(
        allow_blank=True,
        help_text="'' for a counted vote; 're-test', 'gold check' or 'set aside' (a "
        "quarantined annotator's label) for one the consensus did not count.",
    )
    ranking = serializers.JSONField(
        allow_null=True,
        help_text="Ranking items: groups of canonical response indices, best first; else null.",
    )
    evidence = EvidenceSerializer(many=True)


class AdjudicationOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    escalation = serializers.IntegerField(source="escalation_id")
    pair = serializers.IntegerField(source="pair_id")
    decision = serializers.CharField()
    preference = serializers.IntegerField(allow_null=True)
    ranking = serializers.JSONField(allow_null=True, help_text="Ranking items: the decision.")
    note = serializers.CharField()
    expert = serializers.CharField(source="expert.username")
    created_at = serializers.DateTimeField()


@extend_schema(summary="One escalation, with its pair and labels")
class EscalationDetailApi(APIView):
    @extend_schema(responses={200: dict})
    def get(self, request: SignedInApiRequest, escalation_id: int) -> Response:
        escalation = escalation_for_expert(escalation_id=escalation_id, user=request.user)
        review = escalation_review(escalation=escalation, viewer=request.user)
        pair = review["pair"]
        adjudication = review["adjudication"]
        body = EscalationOutputSerializer(escalation, context={"viewer": request.user}).data
        body.update(
            conversation=pair.conversation,
            response_a=pair.response_a,
            response_b=pair.response_b,
            # A ranking item's K responses, as imported (the indices a ranking names); no
            # model names, as on the page. Null for an A/B pair.
            responses=[{"content": response["content"]} for response in pair.responses]
            if pair.responses
            else None,
            attributes={item["name"]: item["value"] for item in review["attributes"]},
            labels=ReviewLabelSerializer(review["labels"], many=True).data,
            prediction=review["prediction"],
            adjudication=None
            if adjudication is None
            else AdjudicationOutputSerializer(adjudication).data,
        )
        return Response(body)


@extend_schema(summary="Claim an escalation")
class EscalationClaimApi(APIView):
    @extend_schema(
        request=None,
        responses={
            200: EscalationOutputSerializer,
            409: OpenApiResponse(
                ErrorSerializer, description="Another expert holds it, or it is decided."
            ),
        },
    )
    def post(self, request: SignedInApiRequest, escalation_id: int) -> Response:
        escalation = escalation_for_expert(escalation_id=escalation_id, user=request.user)
        escalation = escalation_claim(escalation=escalation, expert=request.user)
        return Response(
            EscalationOutputSerializer(escalation, context={"viewer": request.user}).data
        )


@extend_schema(summary="Release a claimed escalation")
class EscalationReleaseApi(APIView):
    @extend_schema(
        request=None,
        responses={
            204: None,
            409: OpenApiResponse(
                ErrorSerializer, description="You do not hold this claim (`not_claimed`)."
            ),
        },
    )
    def post(self, request: SignedInApiRequest, escalation_id: int) -> Response:
        escalation = escalation_for_expert(escalation_id=escalation_id, user=request.user)
        if not escalation_release(escalation=escalation, expert=request.user):
            return Response(
                {"detail": "You do not hold this claim.", "code": "not_claimed"}, status=409
            )
        return Response(status=204)


@extend_schema(summary="Record the expert's final decision")
class EscalationAdjudicateApi(APIView):
    class InputSerializer(StrictSerializer):
        decision = serializers.ChoiceField(choices=Adjudication.Decision.values)
        preference = serializers.IntegerField(
            required=False,
            allow_null=True,
            min_value=-2,
            max_value=2,
            help_text="Canonical orientation (A and B as imported); for decision=preference.",
        )
        # Passed whole to ``ranking_validate`` (in the service), which stops at the first fault:
        # item-by-item validation would word every bad index of a huge body.
        ranking = _RankingField(
            child=serializers.ListField(child=serializers.IntegerField()),
            required=False,
            allow_null=True,
            help_text="Ranking items, for decision=preference: groups of canonical response "
            "indices (as imported), best first.",
        )
        note = typed_text_field(
            limit=ADJUDICATION_NOTE_MAX_CHARS,
            too_long=NOTE_TOO_LONG,
            help_text="Why: what decided it, or why it cannot be decided.",
        )

    OutputSerializer = AdjudicationOutputSerializer

    @extend_schema(
        request=InputSerializer,
        responses={
            201: AdjudicationOutputSerializer,
            409: OpenApiResponse(
                ErrorSerializer, description="Not claimed by you (any more), or already decided."
            ),
        },
    )
    def post(self, request: SignedInApiRequest, escalation_id: int) -> Response:
        escalation = escalation_for_expert(escalation_id=escalation_id, user=request.user)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        adjudication = adjudication_resolve(
            escalation=escalation,
            expert=request.user,
            decision=data["decision"],
            preference=data.get("preference"),
            ranking=data.get("ranking"),
            note=data["note"],
        )
        return Response(self.OutputSerializer(adjudication).data, status=201)


@extend_schema(summary="Make a pair a gold check")
class PairGoldApi(APIView):
    class InputSerializer(StrictSerializer):
        preference = serializers.IntegerField(
            required=False,
            allow_null=True,
            min_value=-2,
            max_value=2,
            help_text="The known answer, canonical; omit to promote the expert's decision.",
        )

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        is_gold = serializers.BooleanField()
        gold_preference = serializers.IntegerField(allow_null=True)
        provenance = serializers.CharField()
        status = serializers.CharField()

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer})
    def post(self, request: SignedInApiRequest, pair_id: int) -> Response:
        pair = pair_for_admin(pair_id=pair_id, user=request.user)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        preference = serializer.validated_data.get("preference")
        if preference is None:
            pair = pair_promote_gold(pair=pair)
        else:
            pair = pair_mark_gold(pair=pair, preference=preference)
        return Response(self.OutputSerializer(pair).data)


class RewriteOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    pair = serializers.IntegerField(source="pair_id")
    based_on = serializers.CharField(help_text="Canonical side ('a' or 'b') it corrects.")
    text = serializers.CharField()
    created_at = serializers.DateTimeField()


@extend_schema(summary="Pairs found 'both bad' that wait for a rewritten answer (experts)")
class RewriteQueueApi(APIView):
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        conversation = serializers.JSONField()
        response_a = serializers.CharField()
        response_b = serializers.CharField()

    @extend_schema(parameters=page_parameters(), responses={200: OutputSerializer(many=True)})
    def get(self, request: SignedInApiRequest, campaign_id: int) -> Response:
        """Oldest first, a page at a time (``core.paging``)."""
        campaign = campaign_for_expert(campaign_id=campaign_id, user=request.user)
        return page_response(
            request,
            rewrite_queue(campaign=campaign, limit=None),
            order=("id",),
            serialize=lambda rows: self.OutputSerializer(rows, many=True).data,
        )


@extend_schema(summary="Write a corrected answer for a pair (experts)")
class PairRewriteApi(APIView):
    class InputSerializer(StrictSerializer):
        # Kept as written (an indented code block, a final newline), as the label API's rewrite;
        # the service stores its line breaks as the original's.
        text = typed_text_field(
            limit=REWRITE_MAX_CHARS,
            too_long=REWRITE_TOO_LONG,
            help_text="Kept as written.",
            trim_whitespace=False,
        )
        based_on = serializers.ChoiceField(
            choices=["a", "b"], help_text="Canonical side (as imported) the rewrite corrects."
        )

    @extend_schema(request=InputSerializer, responses={201: RewriteOutSerializer})
    def post(self, request: SignedInApiRequest, pair_id: int) -> Response:
        pair = pair_for_expert(pair_id=pair_id, user=request.user)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rewrite = rewrite_by_expert(
            pair=pair,
            expert=request.user,
            text=serializer.validated_data["text"],
            based_on=serializer.validated_data["based_on"],
        )
        return Response(RewriteOutSerializer(rewrite).data, status=201)
