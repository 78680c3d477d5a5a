"""Gold pairs: pairs with a known answer, served silently as checks on annotators."""

from __future__ import annotations

from django.db import transaction

from annotation.models import Assignment, ItemKind, Pair
from annotation.selectors import campaign_pair_counts_forget_on_commit
from annotation.services.pair_state import GoldRefusal, pair_gold_refusal, pair_make_gold
from reviewers.errors import GoldNotAllowed

RANKING_GOLD_REFUSED = (
    "A ranking item has no A/B gold answer: it cannot be made gold or promoted to gold."
)
_REFUSALS = {
    GoldRefusal.ESCALATED: "This pair is waiting for an expert; decide it first.",
    GoldRefusal.DISCARDED: "This pair was discarded as ambiguous.",
    GoldRefusal.EXPERT_DECIDED_OTHERWISE: (
        "An expert decided this pair differently; their decision stands."
    ),
}


def pair_mark_gold(*, pair: Pair, preference: int) -> Pair:
    """Give the pair a known answer (canonical orientation) and make it a gold check.

    A pair still waiting for labels leaves the regular queue. The known answer becomes the
    pair's consensus with provenance "gold"; on an adjudicated pair it must match the expert's
    decision (use ``pair_promote_gold``). Escalated, discarded and currently leased pairs are
    refused, and so is a ranking item: its answer would be a whole ranking, not one side.
    """
    with transaction.atomic():
        current = Pair.objects.select_for_update().get(pk=pair.pk)
        campaign = pair.campaign
        if campaign.item_kind == ItemKind.RANKING:
            raise GoldNotAllowed(RANKING_GOLD_REFUSED)
        if preference not in campaign.allowed_preferences:
            allowed = sorted(campaign.allowed_preferences, reverse=True)
            raise GoldNotAllowed(f"preference must be one of {allowed} for this campaign")
        refusal = pair_gold_refusal(pair=current, preference=preference)
        if refusal in (GoldRefusal.ESCALATED, GoldRefusal.DISCARDED):
            raise GoldNotAllowed(_REFUSALS[refusal])
        if Assignment.objects.filter(pair=current, status=Assignment.Status.ACTIVE).exists():
            raise GoldNotAllowed("Annotators are judging this pair right now; try again later.")
        if refusal is not None:
            raise GoldNotAllowed(_REFUSALS[refusal])
        pair_make_gold(pair=current, preference=preference)
        campaign_pair_counts_forget_on_commit(campaign_id=current.campaign_id)
    pair.refresh_from_db()
    return pair


def pair_promote_gold(*, pair: Pair) -> Pair:
    """Promote an expert-adjudicated pair to gold, with the expert's decision as the answer."""
    if pair.campaign.item_kind == ItemKind.RANKING:
        raise GoldNotAllowed(RANKING_GOLD_REFUSED)
    pair.refresh_from_db(fields=["provenance", "consensus_preference"])
    if pair.provenance != Pair.Provenance.ADJUDICATED or pair.consensus_preference is None:
        raise GoldNotAllowed("Only pairs an expert decided with a preference can be promoted.")
    return pair_mark_gold(pair=pair, preference=pair.consensus_preference)
