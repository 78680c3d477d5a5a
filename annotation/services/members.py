"""Campaign membership: who may work on a campaign, in which role, and where they stand.

The one writer of ``CampaignMember.state``. States and transitions (each leaves a
``MemberTransition`` row with its reason and figures)::

    qualifying ──member_admit──> active ──member_quarantine──> quarantined
         (gold accuracy reached, or an admin)    <──member_restore──┘

A member added while the campaign asks for a qualification starts ``qualifying`` (gold pairs
only); everyone else starts ``active``. Quarantine sets the member's labels on pairs not yet
settled aside (kept, flagged ``Label.set_aside``) and gives those slots back to the pairs
through ``pair_state``. Restoring does not take the labels back: their slots went to others
meanwhile, so they stay set aside (nothing is deleted; exports and consensus leave them out).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AbstractUser, Group, User
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.db import IntegrityError, connection, transaction
from django.db.models import Field
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from annotation import hooks
from annotation.models import Campaign, CampaignMember, Label, MemberTransition, Pair
from annotation.roles import Role, role_groups, user_has_role
from annotation.selectors import member_remember
from annotation.services.assignments import assignments_end_for_annotator
from annotation.services.pair_state import pair_lock_open, pair_set_aside_label
from core.errors import BadRequest, Conflict, NotFound

_UNSETTLED = (Pair.Status.QUEUED, Pair.Status.IN_ANNOTATION)
# Bulk additions read at most this many names (one campaign's annotators, not a directory).
BULK_MAX_USERNAMES = 2000
# An uploaded CSV is read whole or refused: one cut short can end in part of a name, and that
# part can be another user's ("alice" cut to "al").
BULK_MAX_CSV_BYTES = 1_000_000
# Advisory-lock namespace (the second key is the campaign) of the changes that take an admin
# member away (see _keep_an_admin); imports use 7301.
_ADMINS_LOCK = 7302


def _initial_state(campaign: Campaign, role: str) -> str:
    if role == CampaignMember.Role.ANNOTATOR and campaign.qualification_gold_count > 0:
        return CampaignMember.State.QUALIFYING
    return CampaignMember.State.ACTIVE


def _role(role: str) -> str:
    if role not in CampaignMember.Role.values:
        raise BadRequest(f"role must be one of {', '.join(CampaignMember.Role.values)}")
    return role


def _keep_an_admin(*, campaign: Campaign, user_id: int, by: AbstractBaseUser | None) -> None:
    """Refuse (409) to remove or demote the campaign's last active admin member when a
    campaign admin asks: nobody but the site admins could manage its members (nor open its
    dashboard) after, the asker included. A site admin, or code (``by`` None), may: the
    campaign stays theirs.

    Inside the change's transaction, under a lock of the campaign's own (not a row: a
    member's row is taken by label submits in another order): two admins demoting each other
    at once would each see the other still there.
    """
    if by is None or user_has_role(by, Role.ADMIN):
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_ADMINS_LOCK, campaign.pk])
    admins = CampaignMember.objects.filter(
        campaign=campaign, role=CampaignMember.Role.ADMIN, user__is_active=True
    )
    if not admins.filter(user_id=user_id).exists():
        return  # no active admin taken away
    if not admins.exclude(user_id=user_id).exists():
        raise Conflict(
            "that is the campaign's last admin: make another member an admin first "
            "(or ask a site admin)",
            code="last_admin",
        )


def member_add(
    *,
    campaign: Campaign,
    user: AbstractBaseUser,
    role: str = CampaignMember.Role.ANNOTATOR,
    by: AbstractBaseUser | None = None,
) -> CampaignMember:
    """Add the user to the campaign (or change their role there); idempotent."""
    role = _role(role)
    member, created = CampaignMember.objects.get_or_create(
        campaign=campaign,
        user=user,
        defaults={
            "role": role,
            "state": _initial_state(campaign, role),
            "added_by_id": by.pk if by else None,
        },
    )
    if not created and member.role != role:
        with transaction.atomic():  # all of it, or none (a removal meanwhile: 409)
            if role != CampaignMember.Role.ADMIN:
                _keep_an_admin(campaign=campaign, user_id=member.user_id, by=by)
            # The leases and claims first, the member's row last, as a label submit locks
            # them (its lease, then the member's row for their figures): in a caller's
            # transaction (the Django admin's), the other order deadlocked with their submit.
            if role == CampaignMember.Role.EXPERT and not user_has_role(user, Role.ADMIN):
                # An expert member no longer annotates here (a site admin still may): the
                # leases they hold could not be submitted, yet would keep their slots until
                # they ran out.
                assignments_end_for_annotator(campaign=campaign, annotator_id=member.user_id)
            if role == CampaignMember.Role.ANNOTATOR:
                hooks.member_stopped_reviewing(campaign_id=campaign.pk, user_id=member.user_id)
            # A conditional UPDATE, not save(): a removal committed meanwhile leaves no row,
            # and save(update_fields=...) would raise a DatabaseError (a 500).
            if not CampaignMember.objects.filter(pk=member.pk).update(role=role):
                raise Conflict("That user was removed from the campaign meanwhile; add them again.")
        member.role = role
    return member


def member_ensure(*, campaign: Campaign, user_id: int) -> CampaignMember:
    """The user's membership, created active (an annotator working in an open campaign who
    was never added, about to be quarantined: the state needs a row)."""
    member, _ = CampaignMember.objects.get_or_create(
        campaign=campaign,
        user_id=user_id,
        defaults={"role": CampaignMember.Role.ANNOTATOR, "state": CampaignMember.State.ACTIVE},
    )
    member_remember(campaign, user_id=user_id, member=member)
    return member


def member_remove(*, campaign: Campaign, user_id: int, by: AbstractBaseUser | None = None) -> None:
    """Take the user out of the campaign; their labels and state history stay, the history
    ending in a transition to ``removed`` (a quarantine lasts until then, not for ever)."""
    with transaction.atomic():
        _keep_an_admin(campaign=campaign, user_id=user_id, by=by)  # first: its lock, then rows
        member = (
            # OF self: the default ordering joins the campaign and the user, whose rows a
            # plain FOR UPDATE would lock too (every label's commit in the campaign waits
            # for the campaign row's key-share lock).
            CampaignMember.objects.select_for_update(of=("self",))
            .filter(campaign=campaign, user_id=user_id)
            .first()
        )
        if member is None:
            raise NotFound("That user is not a member of this campaign.")
        MemberTransition.objects.create(
            member=None,
            campaign_id=member.campaign_id,
            user_id=member.user_id,
            from_state=member.state,
            to_state=MemberTransition.REMOVED,
            reason="removed from the campaign",
            by_id=by.pk if by else None,
        )
        member.delete()
        hooks.member_stopped_reviewing(campaign_id=campaign.pk, user_id=user_id)
    # Leases they hold here end now: they can no longer open the pairs.
    assignments_end_for_annotator(campaign=campaign, annotator_id=user_id)


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


@dataclass
class BulkResult:
    added: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)


def _add_all(
    campaign: Campaign, users: Iterable[AbstractBaseUser], role: str, by: AbstractBaseUser | None
) -> BulkResult:
    result = BulkResult()
    existing = set(
        CampaignMember.objects.filter(campaign=campaign).values_list("user_id", flat=True)
    )
    for user in users:
        name = user.get_username()
        (result.already if user.pk in existing else result.added).append(name)
        member_add(campaign=campaign, user=user, role=role, by=by)
    return result


def csv_text_from_upload(upload: _Readable) -> str:
    """An uploaded CSV's text, whole; over BULK_MAX_CSV_BYTES it is refused."""
    data = upload.read(BULK_MAX_CSV_BYTES + 1)
    if len(data) > BULK_MAX_CSV_BYTES:
        raise BadRequest(
            f"the CSV file is over 1 MB ({BULK_MAX_CSV_BYTES:,} bytes): split it into smaller files"
        )
    # "utf-8-sig": Excel's "CSV UTF-8" starts with a byte-order mark.
    return data.decode("utf-8-sig", errors="replace")


def _username_max_length() -> int:
    user_model = get_user_model()
    name_field = user_model._meta.get_field(user_model.USERNAME_FIELD)
    assert isinstance(name_field, Field)  # noqa: S101 - a user model's name is a plain field
    return int(name_field.max_length or 150)


def usernames_from_csv(text: str) -> list[str]:
    """User names from CSV text: the first column of each row; a "username" header is skipped."""
    text = text.removeprefix("\ufeff")  # a byte-order mark pasted or posted with the text
    if "\x00" in text:
        # No user name holds one, and PostgreSQL refuses to compare text that does.
        raise BadRequest("the CSV contains a NUL character")
    names: list[str] = []
    longest = _username_max_length()
    try:
        for row in csv.reader(io.StringIO(text)):
            if not row or not row[0].strip():
                continue
            name = row[0].strip()
            if not names and name.lower() == "username":
                continue
            if len(name) > longest:
                # Checked here, not left to the csv module's field limit: an import raises that
                # limit for the whole process.
                raise BadRequest(
                    f"the CSV holds a cell of {len(name):,} characters where a user name "
                    f"(at most {longest}) belongs"
                )
            names.append(name)
    except csv.Error as error:  # a field over the csv module's limit, for one
        raise BadRequest(f"the CSV cannot be read: {error}") from None
    if len(names) > BULK_MAX_USERNAMES:
        raise BadRequest(f"at most {BULK_MAX_USERNAMES} user names at once")
    return list(dict.fromkeys(names))


@transaction.atomic
def members_add_usernames(
    *,
    campaign: Campaign,
    usernames: list[str],
    role: str = CampaignMember.Role.ANNOTATOR,
    by: AbstractBaseUser | None = None,
) -> BulkResult:
    """Add every named user, or none: an unknown name rejects the whole list."""
    role = _role(role)
    usernames = list(dict.fromkeys(usernames))  # each name once, in the order given
    if not usernames:
        raise BadRequest("no user names given")
    users = {
        user.get_username(): user
        for user in get_user_model().objects.filter(username__in=usernames)
    }
    unknown = [name for name in usernames if name not in users]
    if unknown:
        raise BadRequest("unknown users: " + ", ".join(unknown[:20]))
    return _add_all(campaign, [users[name] for name in usernames], role, by)


@transaction.atomic
def members_add_group(
    *,
    campaign: Campaign,
    group_name: str,
    role: str = CampaignMember.Role.ANNOTATOR,
    by: AbstractBaseUser | None = None,
) -> BulkResult:
    """Add every user of a Django group (as it is now: later members of the group are not)."""
    role = _role(role)
    group = Group.objects.filter(name=group_name).first()
    if group is None:
        raise BadRequest(f"no group named {group_name!r}")
    users = get_user_model().objects.filter(groups=group, is_active=True).order_by("username")
    return _add_all(campaign, users, role, by)


@dataclass(frozen=True)
class Invitation:
    member: CampaignMember
    set_password_path: str  # one use: the token dies once the password is set


_GLOBAL_ROLE: dict[str, Role] = {
    CampaignMember.Role.ANNOTATOR: Role.ANNOTATOR,
    CampaignMember.Role.EXPERT: Role.EXPERT,
}


class InvitationTokenGenerator(PasswordResetTokenGenerator):
    """Django's password-reset token (its salt too: links issued before still match), which
    holds only while the invitation does: the user is active and a membership they were
    invited into still exists.

    Django's token is a hash of the password hash and the last login, so setting a password
    kills it, but nothing else did: a removed invitee (by the members page, the admin, or
    their campaign's deletion), or a deactivated one, could still set a password through the
    link they were sent, and log in with the site-wide role they were given (to open
    campaigns, for one). Django's own confirm view checks neither.
    """

    def check_token(self, user: User | None, token: str | None) -> bool:
        if user is None or not user.is_active:
            return False
        if not CampaignMember.objects.filter(user_id=user.pk, invited_at__isnull=False).exists():
            return False
        return super().check_token(user, token)


invitation_token_generator = InvitationTokenGenerator()


def invitation_path(user: User) -> str:
    """A password-set link for the user, valid until they set a password (or it times out),
    and only while they are active and a member of a campaign that invited them."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = invitation_token_generator.make_token(user)
    return reverse("password_reset_confirm", kwargs={"uidb64": uid, "token": token})


@transaction.atomic
def member_invite(
    *,
    campaign: Campaign,
    username: str,
    email: str = "",
    role: str = CampaignMember.Role.ANNOTATOR,
    by: AbstractBaseUser | None = None,
) -> Invitation:
    """Create a user with no usable password, make them a member, and return their link.

    The user gets the site-wide group of their campaign role (annotator or expert: what kind
    of work they do); a campaign admin gets none, their rights come from the membership.
    No API token: only a token's digest is stored, so one made here would be a key nobody
    was shown; a site admin issues one when asked (the admin's Tokens page shows it once).
    """
    role = _role(role)
    user_model = get_user_model()
    # As full_clean will store it (NFKC: a full-width "Ａda" is "Ada"), before it is compared.
    username = user_model.normalize_username(username)
    taken = Conflict(f"a user named {username!r} exists already; add them instead")
    # Case-insensitively: "Ada" beside "ada" is another account to Django but the same name to
    # a reader, and whoever holds the invitation link would hold a look-alike of ada's.
    existing = user_model.objects.filter(username__iexact=username).first()
    if existing is not None:
        name = existing.get_username()
        if _pending_invitee(campaign, existing) is not None:
            raise Conflict(
                f"{name!r} was invited already and has not set a password yet: resend their "
                "invitation from the campaign's members (a new link; the old one stops working)",
                code="invitation_pending",
            )
        raise Conflict(f"a user named {name!r} exists already; add them instead")
    user = user_model(username=username, email=email)
    user.set_unusable_password()
    try:
        user.full_clean(exclude=["password"])
    except Exception as exc:  # ValidationError: tell the admin which value is wrong
        raise BadRequest(f"cannot create {username!r}: {exc}") from exc
    try:
        # The check above misses a concurrent invite of the same name until it commits; the
        # unique username then refuses this insert, and the savepoint keeps the caller usable.
        with transaction.atomic():
            user.save()
    except IntegrityError:
        raise taken from None
    if role in _GLOBAL_ROLE:
        assert isinstance(user, AbstractUser)  # noqa: S101 - the user model has groups
        user.groups.add(role_groups()[_GLOBAL_ROLE[role]])
    member = member_add(campaign=campaign, user=user, role=role, by=by)
    member.invited_at = timezone.now()
    member.save(update_fields=["invited_at"])
    return Invitation(member=member, set_password_path=invitation_path(user))


def _pending_invitee(campaign: Campaign, user: AbstractBaseUser) -> CampaignMember | None:
    """The user's membership here if they are this campaign's pending invitee: invited by
    this campaign (not merely added), no usable password, never logged in, active, neither
    staff nor superuser, and in no group but the annotator and expert roles'. None otherwise:
    re-issuing a link to anyone else would hand their account to whoever holds the link."""
    assert isinstance(user, AbstractUser)  # noqa: S101 - the user model has these flags
    if (
        user.has_usable_password()
        or user.last_login is not None
        or not user.is_active
        or user.is_staff
        or user.is_superuser
    ):
        return None
    role_names = {Role.ANNOTATOR.value, Role.EXPERT.value}
    if user.groups.exclude(name__in=role_names).exists():
        return None  # a service account, or one a site admin gave other rights
    return CampaignMember.objects.filter(
        campaign=campaign, user_id=user.pk, invited_at__isnull=False
    ).first()


@transaction.atomic
def member_reinvite(
    *, campaign: Campaign, user_id: int, by: AbstractBaseUser | None = None
) -> Invitation:
    """A new set-password link for the campaign's pending invitee (their link expired, or was
    lost); the link given before stops working.

    Django's token is a hash of the user's password hash and last login (with a timestamp):
    the unusable password is drawn again, so a token made before no longer matches. Anyone
    but a pending invitee of this campaign is refused (409), the campaign's other members
    included: they have an account of their own.
    """
    user = (
        # Locked: a password set through the old link meanwhile makes this a refusal, and
        # leaves their password as they set it.
        get_user_model().objects.select_for_update().filter(pk=user_id).first()
    )
    if user is None or not CampaignMember.objects.filter(campaign=campaign, user=user).exists():
        raise NotFound("That user is not a member of this campaign.")
    member = _pending_invitee(campaign, user)
    if member is None:
        raise Conflict(
            f"{user.get_username()!r} is no pending invitee of this campaign (they have a "
            "password or have logged in, or were added rather than invited here): only a "
            "site admin can reset their password",
            code="not_pending_invitee",
        )
    user.set_unusable_password()
    get_user_model().objects.filter(pk=user.pk).update(password=user.password)
    member.user = user
    return Invitation(member=member, set_password_path=invitation_path(user))


# --- state --------------------------------------------------------------------------------


def _transition(
    member: CampaignMember,
    *,
    from_states: tuple[str, ...],
    to_state: str,
    reason: str,
    figures: dict[str, Any] | None,
    by: AbstractBaseUser | None,
) -> MemberTransition | None:
    """The conditional UPDATE that moves the member on, and its record, in one transaction
    (the UPDATE holds the member's row until both are in, so a concurrent removal waits);
    None if it lost."""
    previous = member.state
    with transaction.atomic():
        changed = CampaignMember.objects.filter(pk=member.pk, state__in=from_states).update(
            state=to_state
        )
        if not changed:
            return None
        transition = MemberTransition.objects.create(
            member=member,
            campaign_id=member.campaign_id,
            user_id=member.user_id,
            from_state=previous,
            to_state=to_state,
            reason=reason[:200],
            figures=figures or {},
            by_id=by.pk if by else None,
        )
    member.state = to_state
    return transition


def member_record_qualification(*, member: CampaignMember, figures: dict[str, Any]) -> None:
    """Keep the latest qualification figures on the member, for the members page."""
    CampaignMember.objects.filter(pk=member.pk).update(qualification=figures)
    member.qualification = figures


def member_admit(
    *,
    member: CampaignMember,
    reason: str,
    figures: dict[str, Any] | None = None,
    by: AbstractBaseUser | None = None,
) -> bool:
    """qualifying -> active (the qualification passed, or an admin admits them)."""
    return None is not _transition(
        member,
        from_states=(CampaignMember.State.QUALIFYING,),
        to_state=CampaignMember.State.ACTIVE,
        reason=reason,
        figures=figures,
        by=by,
    )


@transaction.atomic
def member_quarantine(
    *,
    member: CampaignMember,
    reason: str,
    figures: dict[str, Any] | None = None,
    by: AbstractBaseUser | None = None,
) -> int | None:
    """active -> quarantined: end their leases and set their unsettled labels aside.

    Returns how many labels were set aside, or None when the member was not active (someone
    else quarantined them first). Each pair is locked before its label is set aside, and only
    a pair still waiting for labels (no consensus yet) gives its slot back.

    A quarantine often runs inside a label submit's transaction, which holds the labelled
    pair's lock: waiting here for another pair's lock could close a cycle with another
    annotator's submit (each holding the pair the other's quarantine wants). So pairs locked
    by others right now are skipped, and set aside after this transaction commits, by a pass
    that holds no other pair while it waits (``_set_aside_after_commit``); the count returned
    leaves them out, the transition's figures include them once done.
    """
    transition = _transition(
        member,
        from_states=(CampaignMember.State.ACTIVE,),
        to_state=CampaignMember.State.QUARANTINED,
        reason=reason,
        figures=figures,
        by=by,
    )
    if transition is None:
        return None
    assignments_end_for_annotator(campaign=member.campaign, annotator_id=member.user_id)
    set_aside, busy = _set_aside_unsettled(member, pair_ids=None, wait=False)
    transition.figures = {**transition.figures, "labels_set_aside": set_aside}
    transition.save(update_fields=["figures"])
    if busy:
        # Robust: the label that quarantined them is in; a failure here is logged, not a 500.
        transaction.on_commit(
            lambda: _set_aside_after_commit(member, pair_ids=busy),
            robust=True,
        )
    return set_aside


def _set_aside_unsettled(
    member: CampaignMember, *, pair_ids: list[int] | None, wait: bool
) -> tuple[int, list[int]]:
    """Set aside the member's labels on unsettled pairs (of ``pair_ids``, or all), each pair
    locked first, in pair order; with ``wait`` False, pairs another transaction holds are
    skipped. Returns how many were set aside and the pairs skipped."""
    candidates = Label.objects.filter(
        campaign_id=member.campaign_id,
        annotator_id=member.user_id,
        set_aside=False,
        is_gold_check=False,
        is_retest=False,
        pair__status__in=_UNSETTLED,
        pair__provenance=Pair.Provenance.NONE,
    )
    if pair_ids is not None:
        candidates = candidates.filter(pair_id__in=pair_ids)
    set_aside = 0
    busy: list[int] = []
    for label_id, pair_id in list(candidates.order_by("pair_id").values_list("pk", "pair_id")):
        locked = pair_lock_open(pair_id=pair_id, wait=wait)
        if locked is None:
            busy.append(pair_id)
            continue
        # Read under the lock: the pair may have settled (and even reopened for its re-test,
        # unsettled again but with a consensus that counts this label) since the read above.
        if not locked:
            continue
        if Label.objects.filter(pk=label_id, set_aside=False).update(set_aside=True):
            pair_set_aside_label(pair_id=pair_id)
            set_aside += 1
    return set_aside, busy


def _set_aside_after_commit(member: CampaignMember, *, pair_ids: list[int]) -> None:
    """The pairs a quarantine skipped, locked one at a time in pair order (this transaction
    holds no other pair while it waits), while the member is still quarantined."""
    _set_aside_while_quarantined(member.pk, pair_ids=pair_ids, wait=True)


def members_set_aside_left_behind() -> int:
    """Labels a quarantine left on unsettled pairs, set aside now; how many.

    A quarantine skips pairs another transaction holds and sets them aside just after its
    commit (``_set_aside_after_commit``); a process killed in between, or a failure there,
    leaves them counted. The periodic sweep (``annotation.fail_stale_work``) finishes the job:
    quarantined members are few, and each pass skips pairs held right now (the next one takes
    them)."""
    quarantined = CampaignMember.objects.filter(state=CampaignMember.State.QUARANTINED)
    return sum(
        _set_aside_while_quarantined(member_id, pair_ids=None, wait=False)
        for member_id in list(quarantined.values_list("pk", flat=True))
    )


def _set_aside_while_quarantined(member_id: int, *, pair_ids: list[int] | None, wait: bool) -> int:
    """``_set_aside_unsettled`` for a member still quarantined (their row locked), counted in
    the figures of their latest quarantine; how many were set aside."""
    with transaction.atomic():
        member = (
            # OF self: not the campaign's row (see member_remove), which every label's
            # commit in the campaign needs while this waits for a pair.
            CampaignMember.objects.select_for_update(of=("self",))
            .filter(pk=member_id, state=CampaignMember.State.QUARANTINED)
            .first()
        )
        if member is None:
            return 0
        set_aside, _busy = _set_aside_unsettled(member, pair_ids=pair_ids, wait=wait)
        latest = (
            MemberTransition.objects.select_for_update()
            .filter(member=member, to_state=CampaignMember.State.QUARANTINED)
            .order_by("-at", "-id")
            .first()
        )
        if set_aside and latest is not None:
            total = int(latest.figures.get("labels_set_aside", 0)) + set_aside
            latest.figures = {**latest.figures, "labels_set_aside": total}
            latest.save(update_fields=["figures"])
        return set_aside


def member_restore(
    *,
    member: CampaignMember,
    reason: str = "restored by an admin",
    by: AbstractBaseUser | None = None,
) -> bool:
    """quarantined -> active. Set-aside labels stay set aside (their slots went to others)."""
    return None is not _transition(
        member,
        from_states=(CampaignMember.State.QUARANTINED,),
        to_state=CampaignMember.State.ACTIVE,
        reason=reason,
        figures=None,
        by=by,
    )
