"""POST /api/model-versions/{id}/score: rewards, and p(A better) for pairs, from a worker."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.requests import SignedInApiRequest
from scoring.deploy.serving import (
    model_version_for_scoring,
    model_version_score,
    score_limits,
)

ROLES = ("system", "user", "assistant")


class ScoreTurnSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=ROLES)
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)


class ScoreItemSerializer(serializers.Serializer):
    """A conversation (or a single user ``prompt``) with one ``response`` to reward, or two
    (``response_a``, ``response_b``) to compare."""

    conversation = ScoreTurnSerializer(many=True, required=False, allow_empty=False)
    prompt = serializers.CharField(required=False, trim_whitespace=False)
    response = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    response_a = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    response_b = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("conversation" in attrs) == ("prompt" in attrs):
            raise serializers.ValidationError("give either 'conversation' or 'prompt'")
        single = "response" in attrs
        pair = "response_a" in attrs or "response_b" in attrs
        if single == pair or (pair and not ("response_a" in attrs and "response_b" in attrs)):
            raise serializers.ValidationError(
                "give either 'response', or both 'response_a' and 'response_b'"
            )
        conversation = attrs.get("conversation") or [{"role": "user", "content": attrs["prompt"]}]
        if conversation[-1]["role"] != "user":
            # As an import requires: the responses answer the last user turn. A chat template's
            # own rules (roles that alternate) are checked where the model is: a 400 from there.
            raise serializers.ValidationError("the conversation must end with a user turn")
        item: dict[str, Any] = {
            "conversation": [{"role": t["role"], "content": t["content"]} for t in conversation]
        }
        for key in ("response", "response_a", "response_b"):
            if key in attrs:
                item[key] = attrs[key]
        return item


class ScoreResultSerializer(serializers.Serializer):
    """``reward`` for a single response; ``reward_a``, ``reward_b``, ``p_a_better`` for a pair."""

    reward = serializers.FloatField(required=False)
    reward_a = serializers.FloatField(required=False)
    reward_b = serializers.FloatField(required=False)
    p_a_better = serializers.FloatField(required=False)


def _check_item_count(count: int, *, as_field: bool = False) -> None:
    max_items = score_limits()["max_items"]
    if count > max_items:
        message = f"at most {max_items} items per request, got {count}"
        raise serializers.ValidationError({"items": [message]} if as_field else message)


def _characters(item: dict[str, Any]) -> int:
    # A turn costs its role's name too (the chat template writes at least that much), so that a
    # conversation of thousands of empty turns is not a free ride past the limit.
    turns = sum(len(turn["role"]) + len(turn["content"]) for turn in item["conversation"])
    return turns + sum(len(item.get(key, "")) for key in ("response", "response_a", "response_b"))


class ModelVersionScoreApi(APIView):
    """Score up to SCORE_MAX_ITEMS items with a model version (admins and scoring-service
    accounts). Waits up to SCORE_TIMEOUT_S for a `gpu` worker: 504 when none answered, 503 when
    the queue or the worker failed, 400 when the model's chat template refused a conversation."""

    class InputSerializer(serializers.Serializer):
        items = ScoreItemSerializer(many=True, allow_empty=False)

        def to_internal_value(self, data: Any) -> dict[str, Any]:
            # Counted before any item is validated: an over-limit batch is refused at once,
            # not after validating each of its (up to a request body's worth of) items.
            items = data.get("items") if isinstance(data, Mapping) else None
            if isinstance(items, list):
                _check_item_count(len(items), as_field=True)
            return super().to_internal_value(data)

        def validate_items(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            # Counted again: a form body's items (``items[0]prompt``) are no list until
            # validated, so to_internal_value could not count them.
            _check_item_count(len(items))
            limits = score_limits()
            characters = sum(_characters(item) for item in items)
            if characters > limits["max_chars"]:
                raise serializers.ValidationError(
                    f"at most {limits['max_chars']} characters per request, got {characters}"
                )
            return items

    class OutputSerializer(serializers.Serializer):
        model_version = serializers.IntegerField()
        campaign = serializers.IntegerField()
        number = serializers.IntegerField()
        results = ScoreResultSerializer(many=True)

    @extend_schema(
        summary="Score conversations and responses with a model version",
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            400: OpenApiResponse(description="Bad input or over the limits."),
            404: OpenApiResponse(description="No such version, or not allowed."),
            409: OpenApiResponse(description="The version is archived."),
            503: OpenApiResponse(description="The queue or the worker failed."),
            504: OpenApiResponse(description="No worker answered in time."),
        },
    )
    def post(self, request: SignedInApiRequest, version_id: int) -> Response:
        version = model_version_for_scoring(version_id=version_id, user=request.user)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # A ScoringError is the handler's 409, 503 or 504.
        results = model_version_score(version=version, items=serializer.validated_data["items"])
        payload = {
            "model_version": version.pk,
            "campaign": version.campaign_id,
            "number": version.number,
            "results": results,
        }
        return Response(self.OutputSerializer(payload).data, status=status.HTTP_200_OK)
