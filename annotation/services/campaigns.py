"""Creating a campaign from the product (page and API): the settings a team sets first; and
changing its overlap (``annotators_per_pair``) once pairs are in.

The rest of a campaign's settings (escalation rules, quarantine, qualification, aspects, the
loop's tuning) keep their defaults and stay in the Django admin, where each is documented.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from annotation.models import Campaign, Pair
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
        field, messages = next(iter(sorted(error.message_dict.items())))
        raise CampaignInvalid(f"{field}: {' '.join(messages)}") from error
    try:
        with transaction.atomic():
            campaign.save()
    except IntegrityError as error:  # created by someone else since the check
        raise CampaignNameTaken(f"a campaign named {name!r} already exists") from error
    return campaign


# The largest overlap: a pair's slot counts are small integers (and a spare slot is added).
_MAX_PER_PAIR = 1000
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
    # Of those, pairs that already had the new overlap's slots in use: one label more each.
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
                f"{self.pairs_one_more:,} of them already had {self.new} or more labels or "
                "leases out: each takes one label more, which settles it on all its labels."
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

    Consensus reads the campaign's setting when a label arrives, and the engine tells a
    re-test by the pair's verdict, so every pair not yet settled reaches a consensus under
    the new overlap. A label submitted in the instant the change commits may still be
    counted under the old one (its request read the campaign before): a pair it settles
    early keeps that verdict, and one it leaves short has its spare slot.
    """
    if isinstance(annotators_per_pair, bool) or not isinstance(annotators_per_pair, int):
        raise CampaignInvalid("annotators_per_pair: a whole number is required")
    if not 1 <= annotators_per_pair <= _MAX_PER_PAIR:
        raise CampaignInvalid(f"annotators_per_pair: between 1 and {_MAX_PER_PAIR}")
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
