"""REST API of campaign membership (admins of the campaign and site admins)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import CampaignMember
from annotation.selectors import (
    MEMBERS_ORDER,
    campaign_for_admin,
    campaign_members,
    campaign_members_ordered,
)
from annotation.services.members import (
    BulkResult,
    member_add,
    member_admit,
    member_invite,
    member_reinvite,
    member_remove,
    member_restore,
    members_add_group,
    members_add_usernames,
    usernames_from_csv,
)
from core.errors import BadRequest
from core.paging import page_parameters, page_response
from core.requests import SignedInApiRequest
from core.serializers import ErrorSerializer, StrictSerializer


class MemberOutputSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=CampaignMember.Role.choices)
    state = serializers.ChoiceField(choices=CampaignMember.State.choices)
    added_at = serializers.DateTimeField()
    qualification = serializers.JSONField(allow_null=True)
    last_transition = serializers.JSONField(allow_null=True)
    labels_set_aside = serializers.IntegerField()
    invitation_pending = serializers.BooleanField(
        help_text="Invited here and not signed in yet: action resend_invitation gives a new link."
    )


def _member_row(row: dict[str, Any]) -> dict[str, Any]:
    member, transition = row["member"], row["last_transition"]
    return {
        "user_id": member.user_id,
        "username": row["user"].get_username(),
        "role": member.role,
        "state": member.state,
        "added_at": member.added_at,
        "qualification": member.qualification,
        "last_transition": None
        if transition is None
        else {
            "from": transition.from_state,
            "to": transition.to_state,
            "reason": transition.reason,
            "figures": transition.figures,
            "at": transition.at.isoformat(),
        },
        "labels_set_aside": row["labels_set_aside"],
        "invitation_pending": member.invitation_pending,
    }


def _bulk_body(result: BulkResult) -> dict[str, Any]:
    return {"added": result.added, "already_members": result.already}


@extend_schema(summary="List or add a campaign's members")
class MembersApi(APIView):
    class InputSerializer(StrictSerializer):
        """Exactly one of: username, usernames, csv, group, invite."""

        username = serializers.CharField(required=False, max_length=150)
        usernames = serializers.ListField(
            child=serializers.CharField(max_length=150), required=False, max_length=2000
        )
        csv = serializers.CharField(required=False, help_text="User names, one a row.")
        group = serializers.CharField(required=False, max_length=150)
        invite = serializers.CharField(
            required=False, max_length=150, help_text="A new user's name: creates and invites."
        )
        email = serializers.EmailField(required=False, allow_blank=True, default="")
        role = serializers.ChoiceField(
            choices=CampaignMember.Role.choices, default=CampaignMember.Role.ANNOTATOR
        )

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            given = [
                key for key in ("username", "usernames", "csv", "group", "invite") if key in attrs
            ]
            if len(given) != 1:
                raise serializers.ValidationError(
                    "give exactly one of username, usernames, csv, group or invite"
                )
            return attrs

    @extend_schema(parameters=page_parameters(), responses={200: MemberOutputSerializer(many=True)})
    def get(self, request: SignedInApiRequest, campaign_id: int) -> Response:
        """The members by user name, a page at a time (``core.paging``)."""
        campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
        return page_response(
            request,
            campaign_members_ordered(campaign=campaign),
            order=MEMBERS_ORDER,
            serialize=lambda members: [
                _member_row(row) for row in campaign_members(campaign=campaign, members=members)
            ],
        )

    @extend_schema(
        request=InputSerializer,
        responses={
            201: OpenApiResponse(description="Who was added (and the invitee's link)."),
            400: OpenApiResponse(description="Unknown users or group, or a bad role."),
            409: OpenApiResponse(
                ErrorSerializer,
                description="Inviting a name in use, or a role change that raced a removal.",
            ),
        },
    )
    def post(self, request: SignedInApiRequest, campaign_id: int) -> Response:
        campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        role, by = data["role"], request.user
        if "username" in data:
            user = get_user_model().objects.filter(username=data["username"]).first()
            if user is None:
                raise BadRequest(f"no user named {data['username']!r}")
            member_add(campaign=campaign, user=user, role=role, by=by)
            return Response({"added": [data["username"]]}, status=201)
        if "invite" in data:
            invitation = member_invite(
                campaign=campaign, username=data["invite"], email=data["email"], role=role, by=by
            )
            link = request.build_absolute_uri(invitation.set_password_path)
            return Response(
                {
                    "added": [invitation.member.user.get_username()],
                    "user_id": invitation.member.user_id,
                    "set_password_url": link,
                },
                status=201,
            )
        if "group" in data:
            result = members_add_group(
                campaign=campaign, group_name=data["group"], role=role, by=by
            )
            return Response(_bulk_body(result), status=201)
        names = data["usernames"] if "usernames" in data else usernames_from_csv(data["csv"])
        result = members_add_usernames(campaign=campaign, usernames=names, role=role, by=by)
        return Response(_bulk_body(result), status=201)


@extend_schema(summary="Remove a member, or admit or restore them")
class MemberApi(APIView):
    class InputSerializer(StrictSerializer):
        action = serializers.ChoiceField(choices=["admit", "restore", "resend_invitation"])

    @extend_schema(
        request=None, responses={204: None, 404: OpenApiResponse(description="Not a member.")}
    )
    def delete(self, request: SignedInApiRequest, campaign_id: int, user_id: int) -> Response:
        campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
        member_remove(campaign=campaign, user_id=user_id, by=request.user)
        return Response(status=204)

    @extend_schema(
        request=InputSerializer,
        responses={
            200: MemberOutputSerializer,
            409: OpenApiResponse(
                ErrorSerializer,
                description="resend_invitation for anyone but a pending invitee of this campaign.",
            ),
        },
        operation_id="campaigns_members_change",
    )
    def post(self, request: SignedInApiRequest, campaign_id: int, user_id: int) -> Response:
        """Admit a qualifying member, or restore a quarantined one (recorded as a transition),
        or resend a pending invitee's invitation (``set_password_url``: a new one-time link,
        the one given before stops working)."""
        campaign = campaign_for_admin(campaign_id=campaign_id, user=request.user)
        member = get_object_or_404(
            CampaignMember.objects.select_related("campaign"), campaign=campaign, user_id=user_id
        )
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        action, extra = serializer.validated_data["action"], dict[str, str]()
        if action == "resend_invitation":
            invitation = member_reinvite(campaign=campaign, user_id=user_id, by=request.user)
            link = request.build_absolute_uri(invitation.set_password_path)
            extra = {"set_password_url": link}
        elif action == "admit":
            member_admit(member=member, reason="admitted by an admin", by=request.user)
        else:
            member_restore(member=member, by=request.user)
        fresh = list(campaign_members_ordered(campaign=campaign).filter(pk=member.pk))
        (row,) = campaign_members(campaign=campaign, members=fresh)
        return Response({**_member_row(row), **extra})
