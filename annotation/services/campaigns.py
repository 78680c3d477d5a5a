"""Creating a campaign from the product (page and API): the settings a team sets first;
changing its overlap (``annotators_per_pair``) once pairs are in; and changing any of its
settings (``campaign_update``: the settings API), checked as at creation.

The rest of a campaign's settings (escalation rules, quarantine, qualification, aspects, the
loop's tuning) start at their defaults; the Django admin documents each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, transaction

from annotation import hooks
from annotation.aspects import AspectError, parse_aspects
from annotation.models import Campaign, Label, Pair
from annotation.models.campaigns import MAX_ANNOTATORS_PER_PAIR
from annotation.selectors import campaign_pair_counts
from annotation.services.imports import campaign_rounds_lock
from annotation.services.pair_state import OverlapApplied, pairs_apply_overlap
from core.errors import BadRequest, Conflict, NotFound

# What a new campaign may be given; everything else starts at its default.
CREATE_FIELDS = (
    "name",
    "guidelines",
    "scale",
    "item_kind",
    "annotators_per_pair",
    "open_to_all",
    "gold_share",
    "retest_share",
    "round_size",
    "auto_retrain",
    "consensus_rule",
)


class CampaignInvalid(BadRequest):
    code = "invalid_campaign"


class CampaignNameTaken(Conflict):
    code = "campaign_exists"


def _first_problem(error: ValidationError) -> str:
    """The first field's problem in error ("field: message", fields by name); a problem of the
    whole campaign (a database constraint, which repeats a field's own check in other words)
    only if no field has one."""
    problems = sorted(
        error.message_dict.items(), key=lambda item: (item[0] == NON_FIELD_ERRORS, item[0])
    )
    field, messages = problems[0]
    return f"{field}: {' '.join(messages)}"


def campaign_create(*, created_by: User | None, **fields: Any) -> Campaign:
    """A new campaign with these settings (``CREATE_FIELDS``), checked before it is saved:
    CampaignInvalid names the first wrong field, CampaignNameTaken a name in use."""
    unknown = sorted(set(fields) - set(CREATE_FIELDS))
    if unknown:
        raise CampaignInvalid(f"unknown campaign setting {', '.join(unknown)}")
    name = fields["name"] = str(fields.get("name") or "").strip()
    if name and Campaign.objects.filter(name=name).exists():
        raise CampaignNameTaken(f"a campaign named {name!r} already exists")
    campaign = Campaign(created_by=created_by, **fields)
    try:
        campaign.full_clean(validate_unique=False)  # the name: above, and the constraint below
    except ValidationError as error:
        raise CampaignInvalid(_first_problem(error)) from error
    try:
        with transaction.atomic():
            campaign.save()
    except IntegrityError as error:  # created by someone else since the check
        raise CampaignNameTaken(f"a campaign named {name!r} already exists") from error
    return campaign


_SETTLED = (
    Pair.Status.COMPLETE,
    Pair.Status.ESCALATED,
    Pair.Status.RESOLVED,
    Pair.Status.DISCARDED,
)


@dataclass(frozen=True)
class OverlapChange:
    """What changing a campaign's ``annotators_per_pair`` did, for the admin."""

    old: int
    new: int
    # Pairs in rounds, not yet settled: they take the new overlap.
    pairs_unsettled: int
    # Of those, pairs whose slots all held labels, N or more: one label more each.
    pairs_one_more: int
    # Of those, pairs whose cap changed (the others had the right one already).
    pairs_changed: int
    # Pairs already settled (complete, escalated, resolved or discarded; counted as the
    # progress counter counts them): they keep the labels they have.
    pairs_settled_kept: int

    @property
    def message(self) -> str:
        if self.old == self.new:
            return f"Annotators per pair is still {self.new}: nothing changed."
        parts = [
            f"Annotators per pair changed from {self.old} to {self.new}.",
            f"{self.pairs_unsettled:,} pair(s) in rounds and not yet settled now take "
            f"{self.new} labels each; pairs still in the pool take {self.new} when a round "
            "queues them.",
        ]
        if self.pairs_one_more:
            parts.append(
                f"{self.pairs_one_more:,} of them already had {self.new} or more labels and none "
                "out: each takes one label more, which settles it on all its labels."
            )
        if self.pairs_settled_kept:
            parts.append(
                f"{self.pairs_settled_kept:,} settled pair(s) keep their verdicts and labels "
                "as they are (none reopens)."
            )
        return " ".join(parts)


def campaign_set_annotators_per_pair(
    *, campaign: Campaign, annotators_per_pair: int
) -> OverlapChange:
    """Change how many labels each pair gets before its consensus, for the pairs to come.

    In one transaction, with the campaign's rounds lock held (imports and round openings
    wait, so none queues pairs with the old overlap meanwhile): the campaign's setting, and
    every pair in a round not yet settled, whose cap becomes the new overlap (raised or
    lowered, never below the slots in use; one that already has them takes one label more:
    ``pair_state.pairs_apply_overlap``). Settled pairs keep what they have (their consensus
    stands; nothing reopens). Pooled pairs take the overlap when a round queues them.

    Consensus reads the campaign's setting again under the pair's row lock when a label
    arrives or changes (``annotation.services.labels``), and an import reads it again under
    the rounds lock, so whatever the interleaving each pair is judged, and each imported
    pair queued, under the overlap in force when that work commits: a label that got its
    pair's lock first commits under the old overlap before this change takes the pair; one
    that waited for the change reads the new one. The engine tells a re-test by the pair's
    verdict, so every pair not yet settled reaches a consensus under the new overlap.
    """
    if isinstance(annotators_per_pair, bool) or not isinstance(annotators_per_pair, int):
        raise CampaignInvalid("annotators_per_pair: a whole number is required")
    if not 1 <= annotators_per_pair <= MAX_ANNOTATORS_PER_PAIR:
        raise CampaignInvalid(f"annotators_per_pair: between 1 and {MAX_ANNOTATORS_PER_PAIR}")
    with transaction.atomic():
        campaign_rounds_lock(campaign.pk)
        # The campaign's row, locked as an update of a non-key column locks it: two changes
        # at once apply one after the other, while labels and leases, whose foreign keys
        # take the row's key-share lock, go on (OF self: nothing joined is locked).
        old = (
            Campaign.objects.select_for_update(of=("self",), no_key=True)
            .filter(pk=campaign.pk)
            .values_list("annotators_per_pair", flat=True)
            .first()
        )
        if old is None:
            raise NotFound("That campaign no longer exists.")
        applied = OverlapApplied(unsettled=0, one_more=0, changed=0)
        if old != annotators_per_pair:
            Campaign.objects.filter(pk=campaign.pk).update(annotators_per_pair=annotators_per_pair)
            applied = pairs_apply_overlap(
                campaign_id=campaign.pk, annotators_per_pair=annotators_per_pair
            )
    campaign.annotators_per_pair = annotators_per_pair
    counts = campaign_pair_counts(campaign=campaign)  # the progress counter's (cached)
    return OverlapChange(
        old=old,
        new=annotators_per_pair,
        pairs_unsettled=applied.unsettled,
        pairs_one_more=applied.one_more,
        pairs_changed=applied.changed,
        pairs_settled_kept=sum(counts[status] for status in _SETTLED),
    )


# What the settings API reads and changes: every setting of the campaign (the Django admin's
# fields; tests/annotation/test_campaign_settings_api_review18.py keeps the two in step).
SETTINGS_FIELDS = (
    *CREATE_FIELDS,
    "lease_seconds",
    "label_change_minutes",
    "attribute_schema",
    "agreement_target",
    "escalation_rules",
    "escalation_domain_wait_minutes",
    "quality_threshold",
    "qualification_gold_count",
    "qualification_threshold",
    "quarantine_min_gold_accuracy",
    "quarantine_min_agreement",
    "quarantine_min_checks",
    "quarantine_window",
    "aspects",
    "allow_rewrites",
    "both_bad_route",
    "reveal_model_after_submit",
    "retrieval_k",
    "activation_tolerance",
    "random_slice_share",
    "ranking_expansion",
)
# Settings the stored pairs and labels were made under: the item kind decides a pair's shape
# (A/B or K responses) and the scale the values of gold answers and labels (checked against
# it when they were stored). Fixed once the campaign has pairs.
SETTINGS_FIXED_ONCE_PAIRS = ("item_kind", "scale")


class CampaignSettingLocked(Conflict):
    code = "campaign_setting_locked"


@dataclass(frozen=True)
class CampaignUpdate:
    """What ``campaign_update`` changed, for the API's answer."""

    campaign: Campaign
    # field -> (old value, new value), for the settings whose value changed only.
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    # Set when annotators_per_pair changed: what that did to the pairs in rounds.
    overlap: OverlapChange | None = None

    @property
    def message(self) -> str:
        if not self.changed:
            return "Nothing changed."
        others = [name for name in self.changed if name != "annotators_per_pair"]
        parts = [f"Changed {', '.join(others)}."] if others else []
        if self.overlap is not None:
            parts.append(self.overlap.message)
        return " ".join(parts)


def campaign_has_pairs(*, campaign: Campaign) -> bool:
    return Pair.objects.filter(campaign_id=campaign.pk).exists()


def campaign_fixed_settings(*, campaign: Campaign) -> list[str]:
    """The settings that cannot change any more (``SETTINGS_FIXED_ONCE_PAIRS`` once the
    campaign has pairs); an aspect that labels rate is fixed too, which this does not list."""
    return list(SETTINGS_FIXED_ONCE_PAIRS) if campaign_has_pairs(campaign=campaign) else []


def campaign_update(*, campaign: Campaign, **fields: Any) -> CampaignUpdate:
    """Change some of the campaign's settings (``SETTINGS_FIELDS``), all or none of them.

    Checked as at creation (``Campaign.full_clean``, the merged settings as a whole):
    CampaignInvalid names the first wrong field, CampaignNameTaken a name in use, and
    CampaignSettingLocked a change the stored data forbids: the item kind or scale once the
    campaign has pairs, or an aspect that labels rate dropped or given another scale (its
    label may change; new aspects may be added). A new ``annotators_per_pair`` goes through
    ``campaign_set_annotators_per_pair``, as in the admin, so pairs in rounds take it too.
    A value equal to the current one is no change, so sending back what GET answered works.
    """
    unknown = sorted(set(fields) - set(SETTINGS_FIELDS))
    if unknown:
        raise CampaignInvalid(f"unknown campaign setting {', '.join(unknown)}")
    if "name" in fields:
        fields["name"] = str(fields["name"] or "").strip()
    # Changes that depend on the campaign's pairs wait for its imports (and round openings)
    # to commit and hold new ones off until this one does; taken before the row, in the
    # order campaign_set_annotators_per_pair takes them, and only when the value read with
    # the request differs (a change of the guidelines does not wait for an import).
    pair_bound = (*SETTINGS_FIXED_ONCE_PAIRS, "annotators_per_pair")
    waits_for_imports = any(
        name in fields and fields[name] != getattr(campaign, name) for name in pair_bound
    )
    with transaction.atomic():
        if waits_for_imports:
            campaign_rounds_lock(campaign.pk)
        # The row, locked as campaign_set_annotators_per_pair locks it: two changes apply one
        # after the other, each to what the other left; labels and leases go on.
        current = (
            Campaign.objects.select_for_update(of=("self",), no_key=True)
            .filter(pk=campaign.pk)
            .first()
        )
        if current is None:
            raise NotFound("That campaign no longer exists.")
        changed = {
            name: (getattr(current, name), value)
            for name, value in fields.items()
            if getattr(current, name) != value
        }
        if not waits_for_imports and any(name in changed for name in pair_bound):
            # Another change of this setting committed since the request read it.
            raise Conflict(
                "The campaign's settings changed meanwhile: read them and try again.",
                code="campaign_changed",
            )
        for name, (_old, new) in changed.items():
            setattr(current, name, new)
        try:
            # The model's own checks, annotators per pair's bounds included (its validators).
            current.full_clean(validate_unique=False)  # the name: below, and the constraint
        except ValidationError as error:
            raise CampaignInvalid(_first_problem(error)) from error
        if (
            "name" in changed
            and Campaign.objects.filter(name=current.name).exclude(pk=current.pk).exists()
        ):
            raise CampaignNameTaken(f"a campaign named {current.name!r} already exists")
        campaign_changes_check(campaign=current, changed=changed)
        plain = [name for name in changed if name != "annotators_per_pair"]
        if plain:
            try:
                with transaction.atomic():
                    current.save(update_fields=plain)
            except IntegrityError as error:  # the name, taken by someone else since the check
                raise CampaignNameTaken(
                    f"a campaign named {current.name!r} already exists"
                ) from error
            campaign_settings_saved(campaign=current, changed=plain)
        overlap = None
        if "annotators_per_pair" in changed:
            # Last, in this transaction: a refusal there undoes the rest too.
            overlap = campaign_set_annotators_per_pair(
                campaign=current, annotators_per_pair=changed["annotators_per_pair"][1]
            )
    return CampaignUpdate(campaign=current, changed=changed, overlap=overlap)


# Settings whose change judges the qualifying members again (hooks.qualification_changed).
QUALIFICATION_SETTINGS = frozenset({"qualification_gold_count", "qualification_threshold"})


def campaign_settings_saved(*, campaign: Campaign, changed: Iterable[str]) -> None:
    """What a saved change of these settings sets off, in its transaction (the settings API
    and the Django admin both call it): qualifying members judged again under new
    qualification settings."""
    if QUALIFICATION_SETTINGS.intersection(changed):
        hooks.qualification_changed(campaign=campaign)


def campaign_changes_check(*, campaign: Campaign, changed: dict[str, tuple[Any, Any]]) -> None:
    """CampaignSettingLocked for a change the campaign's pairs or labels forbid; ``campaign``
    holds the new values, ``changed`` maps each changed setting to (old, new). The settings
    API and the Django admin both ask it."""
    fixed = [name for name in SETTINGS_FIXED_ONCE_PAIRS if name in changed]
    if fixed and campaign_has_pairs(campaign=campaign):
        raise CampaignSettingLocked(
            f"{', '.join(fixed)}: cannot change once the campaign has pairs (its pairs and "
            "labels were stored under the current value); create a new campaign instead"
        )
    if "aspects" in changed:
        in_use = _aspects_rated_and_changed(campaign=campaign, old=changed["aspects"][0])
        if in_use:
            raise CampaignSettingLocked(
                f"aspects: labels already rate {', '.join(in_use)}: keep each in the list with "
                "its scale (its label may change, and new aspects may be added)"
            )


def _aspects_rated_and_changed(*, campaign: Campaign, old: Any) -> list[str]:
    """Aspects of ``old`` that the new aspects drop or rescale and that a label rates."""
    try:
        before = parse_aspects(old)
    except AspectError:  # saved before aspects were checked: nothing it names was ratable
        return []
    after = {aspect.name: aspect for aspect in parse_aspects(campaign.aspects)}  # cleaned
    touched = [
        aspect.name
        for aspect in before
        if aspect.name not in after or after[aspect.name].points != aspect.points
    ]
    if not touched:
        return []
    # One query an aspect: an aspect in use is found at its first label; at most 12 aspects.
    labels = Label.objects.filter(campaign_id=campaign.pk)
    return [name for name in touched if labels.filter(aspect_ratings__has_key=name).exists()]
