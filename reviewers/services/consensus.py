"""What happens when a label arrives: consensus, escalation rules and double-blind re-tests.

``annotation.services.labels.label_submit`` calls ``pair_label_recorded`` (through the
``annotation.hooks.label_recorded`` hook, registered in ``ReviewersConfig.ready``) inside its
transaction with the pair row locked, so the last of N concurrent submits computes the
consensus exactly once.

Re-tests: when a pair completes without dispute, a share (``campaign.retest_share``) of them
gets one more slot (``slot_cap + 1``) and goes back into the queue. The assignment engine hands
the slot to someone who never had the pair (a UNIQUE (pair, annotator) constraint guarantees
it), as an ordinary-looking assignment; only the stored kind says "retest". The re-test label
is kept out of the consensus and of alpha; a re-test that picks another direction than the
consensus (A, tie or B) escalates, and on a ranking item one whose best group shares no
response with the consensus ranking's best group. A changed label (the re-test's, or a regular
one that moves the consensus) is checked again the same way, and an escalation it leaves open
is re-stated as the labels now make it.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from annotation.models import (
    Assignment,
    BothBadRoute,
    Campaign,
    ConsensusRule,
    ItemKind,
    Label,
    Outcome,
    Pair,
)
from annotation.prepared_reads import fetch_all_prepared
from annotation.rankings import first_two_preference
from annotation.selectors import retest_taker_exists
from annotation.services.labels import FLAG_NAMES
from annotation.services.pair_state import (
    pair_escalate,
    pair_lock_status,
    pair_reopen_for_retest,
    pair_retest_done,
    pair_settle,
    pair_settle_ranking,
    pairs_settle_weighted,
)
from reviewers.agreement.rankings import (
    consensus_ranking,
    ranking_disagreement,
    ranking_escalation_reasons,
    ranking_has_clear_best,
    retest_contradicts,
)
from reviewers.consensus import (
    Consensus,
    consensus_of,
    direction,
    escalation_reasons,
    escalation_rules_of,
    pair_disagreement,
)
from reviewers.models import Escalation
from reviewers.services.escalations import (
    FINAL_PAIR_STATUSES,
    escalation_open,
    escalation_recheck,
    escalation_record,
)

logger = logging.getLogger(__name__)


def _max_value(campaign: Campaign) -> int:
    return max(campaign.allowed_preferences)


@dataclass(frozen=True)
class Vote:
    """What consensus needs of a label: its canonical preference, flags and outcome."""

    preference: int
    flags: tuple[str, ...]
    outcome: str = Outcome.PREFERENCE


# Both run under the pair's row lock on every N-th label: prepared statements, no ORM compiling.
_VOTES_SQL = (
    f"SELECT preference, outcome, {', '.join(f'flag_{name}' for name in FLAG_NAMES)} "  # noqa: S608
    f"FROM {Label._meta.db_table} "  # constant names only
    "WHERE pair_id = %s AND NOT is_retest AND NOT is_gold_check AND NOT set_aside ORDER BY id"
)


def _regular_votes(pair_id: int) -> list[Vote]:
    return [
        Vote(
            preference,
            tuple(name for name, on in zip(FLAG_NAMES, flags, strict=True) if on),
            outcome,
        )
        for preference, outcome, *flags in fetch_all_prepared(_VOTES_SQL, [pair_id])
    ]


def pair_label_recorded(*, pair: Pair, label: Label, rng: random.Random | None = None) -> None:
    """Called inside the submit transaction, with the pair row locked and read."""
    if label.is_gold_check:
        return  # gold checks measure the annotator, not the pair
    campaign = pair.campaign
    if label.is_retest:
        _retest_recorded(pair=pair, label=label)
        return
    if _awaits_labels(pair=pair, campaign=campaign, count=pair.labels_count):
        # labels_count (read under the pair's row lock) counts every label but gold checks,
        # so fewer than N means fewer than N regular labels: no need to read them.
        return
    votes = _regular_votes(pair.pk)
    if _awaits_labels(pair=pair, campaign=campaign, count=len(votes)):
        return
    pair_consensus_update(pair=pair, labels=votes, rng=rng, locked=True)


def _awaits_labels(*, pair: Pair, campaign: Campaign, count: int) -> bool:
    """Whether the pair still waits for labels before its consensus: fewer than the
    campaign's N (``count`` of them) and no verdict yet. A pair with a verdict is judged on
    the labels it has, whatever N is now: a raise of N leaves settled pairs as they are
    (``campaign_set_annotators_per_pair``), yet one of their labels changed, or one leased
    before they settled, must still move their consensus."""
    return pair.provenance == Pair.Provenance.NONE and count < campaign.annotators_per_pair


# Escalations that the labels' consensus opens; a changed label can settle them again.
_CONSENSUS_REASONS = (
    Escalation.Reason.NO_MAJORITY,
    Escalation.Reason.OPPOSITE_DIRECTIONS,
    Escalation.Reason.FLAGGED,
    Escalation.Reason.BOTH_BAD,
)
# And those the labels decide, the re-test's included: a change re-states or withdraws them.
_LABEL_REASONS = (*_CONSENSUS_REASONS, Escalation.Reason.RETEST_CONTRADICTION)

# What still holds of a reason after a change: (detail, disagreement), by reason.
Standing = dict[str, tuple[str, float]]


def pair_label_changed(*, pair: Pair, label: Label) -> None:
    """Called inside ``label_change``'s transaction, with the pair row locked and read.

    Once the pair has its N labels, consensus is computed again, and the pair's re-test (if it
    has one) is checked against it as its submit was: a change (of a regular label or of the
    re-test) that creates a dispute, a contradiction or a flag escalates the pair; one that
    settles it withdraws the open escalation the dispute or the re-test had opened (one opened
    for another reason stays, and so does the pair's escalated status). An escalation that
    stays open is re-stated: the reasons that still hold with their current details, those
    settled left out (``escalation_recheck``). Gold checks and re-tests never count towards
    the pair's consensus, and a gold pair's answer is the admin's: a changed label moves
    neither. So a changed re-test leaves a weighted campaign's Dawid–Skene verdict standing,
    and is checked against it, as its submit was.
    """
    if label.is_gold_check:
        return
    campaign = pair.campaign
    if _awaits_labels(pair=pair, campaign=campaign, count=pair.labels_count):
        return
    if pair.status in FINAL_PAIR_STATUSES or pair.provenance == Pair.Provenance.GOLD:
        return
    # Read before the settle below replaces it with the labels' majority.
    weighted = _weighted_verdict(pair) if label.is_retest else None
    # Disputed: escalation_record merges the new reasons into the open escalation. Settled:
    # the pair is marked complete here, and escalated again below if an escalation stays open.
    settled = _consensus_settle(pair=pair, locked=True)
    if weighted is not None and pair.status == Pair.Status.COMPLETE:
        _weighted_verdict_restore(pair=pair, verdict=weighted)
    disagreement = pair.disagreement or 0.0
    standing: Standing = {
        reason: (detail, disagreement)
        for reason, detail in (settled.reasons if settled is not None else ())
    }
    # The re-test against the consensus as it now is: a changed re-test, or a regular change
    # that moved the consensus towards or away from it.
    retest = label if label.is_retest else _retest_label(pair.pk)
    retest_standing: Standing = {} if retest is None else _retest_check(pair=pair, label=retest)
    for reason, (detail, retest_disagreement) in retest_standing.items():
        if reason in standing:  # a flag on a regular label and one on the re-test
            detail = f"{standing[reason][0]}; {detail}"
        standing[reason] = (detail, max(retest_disagreement, disagreement))
    still_open = escalation_recheck(
        pair=pair, label_reasons=_LABEL_REASONS, standing=standing, disagreement=disagreement
    )
    if still_open is not None and pair.status != Pair.Status.ESCALATED:
        pair_escalate(pair_id=pair.pk)
        pair.status = Pair.Status.ESCALATED


def pairs_retest_recheck(pair_ids: Sequence[int]) -> None:
    """Check the re-tests of pairs whose verdict a weighted re-estimate just turned to another
    direction against the new verdict, as their submits were checked against the old one:
    a re-test that now contradicts it escalates, an open contradiction that no longer holds
    is withdrawn (``escalation_recheck``, as ``pair_label_changed`` does). Idempotent: a
    re-run opens nothing new.

    Called by ``pairs_settle_weighted`` inside the transaction that wrote the verdicts; each
    pair is read again under its row lock (already held there, so this waits for nothing).
    """
    retests: dict[int, Label] = {}
    for retest in Label.objects.filter(
        pair_id__in=pair_ids, is_retest=True, set_aside=False
    ).order_by("id"):
        retests.setdefault(retest.pair_id, retest)  # the first, as ``_retest_label`` picks
    if not retests:
        return
    locked = (
        Pair.objects.select_for_update(of=("self",))
        .select_related("campaign")
        .filter(pk__in=retests)
        .order_by("pk")
    )
    for pair in locked:
        if pair.status in FINAL_PAIR_STATUSES or pair.provenance == Pair.Provenance.GOLD:
            continue
        standing = _retest_check(pair=pair, label=retests[pair.pk])
        still_open = escalation_recheck(
            pair=pair,
            label_reasons=(Escalation.Reason.RETEST_CONTRADICTION,),
            standing=standing,
            disagreement=pair.disagreement or 0.0,
        )
        if still_open is not None and pair.status != Pair.Status.ESCALATED:
            pair_escalate(pair_id=pair.pk)


def _weighted_verdict(pair: Pair) -> tuple[int, float] | None:
    """The pair's Dawid–Skene verdict (preference, posterior) when its campaign settles by
    the weighted rule and a re-estimate has settled it; None otherwise."""
    if (
        pair.campaign.consensus_rule != ConsensusRule.DAWID_SKENE
        or pair.provenance != Pair.Provenance.DAWID_SKENE
        or pair.consensus_preference is None
    ):
        return None
    posterior = pair.consensus_posterior  # not in label_change's read: one query, here only
    return None if posterior is None else (pair.consensus_preference, posterior)


def _weighted_verdict_restore(*, pair: Pair, verdict: tuple[int, float]) -> None:
    """Put back the weighted verdict that the majority settle replaced, as a re-estimate
    stores it, on a pair that settled complete (the votes it came from did not change)."""
    preference, posterior = verdict
    pairs_settle_weighted(rows=[(pair.pk, preference, posterior)])
    pair.consensus_preference = preference
    pair.consensus_posterior = posterior
    pair.provenance = Pair.Provenance.DAWID_SKENE


def _retest_label(pair_id: int) -> Label | None:
    """The pair's re-test label (one re-test per pair), unless it was set aside."""
    return (
        Label.objects.filter(pair_id=pair_id, is_retest=True, set_aside=False)
        .order_by("id")
        .first()
    )


@dataclass(frozen=True)
class Settled:
    """A pair's consensus as stored, and the escalation reasons it fired: (reason, detail)."""

    consensus: Consensus
    reasons: list[tuple[str, str]]


def pair_consensus_update(
    *,
    pair: Pair,
    labels: Sequence[Vote | Label] | None = None,
    rng: random.Random | None = None,
    locked: bool = False,
) -> Consensus | None:
    """Store the pair's consensus and provenance, then escalate or maybe schedule a re-test.

    ``locked``: the caller holds the pair's row lock and read its status under it (a label
    submit), so neither needs doing again. Returns None, changing nothing, when an expert has
    already decided the pair.
    """
    settled = _consensus_settle(pair=pair, labels=labels, rng=rng, locked=locked)
    return None if settled is None else settled.consensus


def _consensus_settle(
    *,
    pair: Pair,
    labels: Sequence[Vote | Label] | None = None,
    rng: random.Random | None = None,
    locked: bool = False,
) -> Settled | None:
    """``pair_consensus_update``, also returning the escalation reasons the consensus fired."""
    campaign = pair.campaign
    # No savepoint: a failure here must undo the caller's whole transaction anyway.
    with transaction.atomic(savepoint=False):
        if not locked:
            pair.status = pair_lock_status(pair_id=pair.pk)
        if pair.status in FINAL_PAIR_STATUSES:
            return None
        if campaign.item_kind == ItemKind.RANKING:
            return _ranking_consensus_update(pair=pair, campaign=campaign, rng=rng)
        labels = labels if labels is not None else _regular_votes(pair.pk)
        consensus = consensus_of(
            [vote.preference for vote in labels],
            max_value=_max_value(campaign),
            outcomes=[vote.outcome for vote in labels],
        )
        flags = [name for vote in labels for name in vote.flags]
        reasons = escalation_reasons(
            consensus,
            flags=flags,
            rules=escalation_rules_of(campaign.escalation_rules),
            both_bad_to_expert=campaign.both_bad_route == BothBadRoute.EXPERT,
        )
        status = pair_settle(
            pair_id=pair.pk,
            preference=consensus.preference,
            provenance=consensus.provenance,
            disagreement=consensus.disagreement,
            escalate=bool(reasons),
            outcome=consensus.outcome,
        )
        pair.consensus_preference = consensus.preference
        pair.consensus_outcome = consensus.outcome
        pair.provenance = consensus.provenance
        pair.disagreement = consensus.disagreement
        pair.status = status
        for reason, detail in reasons:
            escalation_record(
                pair=pair, reason=reason, detail=detail, disagreement=consensus.disagreement
            )
        if not reasons and consensus.preference is not None:
            _maybe_schedule_retest(pair=pair, campaign=campaign, rng=rng)
        if campaign.consensus_rule == ConsensusRule.DAWID_SKENE:
            # The majority stands until the campaign's next (debounced) weighted estimate.
            campaign_id = campaign.pk
            transaction.on_commit(lambda: consensus_reestimate_later(campaign_id=campaign_id))
    return Settled(consensus, reasons)


def consensus_reestimate_later(*, campaign_id: int) -> None:
    """Ask for a weighted campaign's re-estimate
    (``reviewers.services.weighted_consensus.campaign_consensus_reestimate``) after the
    debounce window unless one is already asked for: the first label of a window enqueues it,
    the rest of the window rides along."""
    window = settings.CONSENSUS_REESTIMATE_DEBOUNCE_SECONDS
    try:
        if not cache.add(f"reestimate-consensus:{campaign_id}", 1, window):
            return
        current_app.send_task(
            "reviewers.reestimate_consensus", args=(campaign_id,), countdown=window
        )
    except Exception:  # best effort after a commit: the next label asks again
        logger.warning("could not enqueue the consensus re-estimate of campaign %s", campaign_id)


_RANKING_VOTES_SQL = (
    f"SELECT ranking, {', '.join(f'flag_{name}' for name in FLAG_NAMES)} "  # noqa: S608
    f"FROM {Label._meta.db_table} "  # constant names only
    "WHERE pair_id = %s AND NOT is_retest AND NOT is_gold_check AND NOT set_aside "
    "AND ranking IS NOT NULL ORDER BY id"
)


def _ranking_votes(pair_id: int) -> list[tuple[list[list[int]], tuple[str, ...]]]:
    votes = []
    for ranking, *flags in fetch_all_prepared(_RANKING_VOTES_SQL, [pair_id]):
        # Django's PostgreSQL backend hands jsonb over as text outside the ORM.
        value = json.loads(ranking) if isinstance(ranking, str) else ranking
        names = tuple(name for name, on in zip(FLAG_NAMES, flags, strict=True) if on)
        votes.append((value, names))
    return votes


def _ranking_consensus_update(
    *, pair: Pair, campaign: Campaign, rng: random.Random | None
) -> Settled | None:
    """A K-wise item's consensus ranking (mean rank, ties kept), its disagreement and the
    ranking escalation rules; the caller holds the pair's row lock."""
    votes = _ranking_votes(pair.pk)
    if not votes:
        return None
    rankings = [ranking for ranking, _flags in votes]
    size = sum(len(group) for group in rankings[0])
    disagreement = ranking_disagreement(rankings, size)
    reasons = ranking_escalation_reasons(
        rankings,
        disagreement=disagreement,
        flags=[name for _ranking, flags in votes for name in flags],
        rules=escalation_rules_of(campaign.escalation_rules),
    )
    # No clear best: no consensus, whether or not the campaign escalates it (no_majority off).
    ranking = consensus_ranking(rankings, size) if ranking_has_clear_best(rankings) else None
    if ranking is None:
        provenance = Pair.Provenance.UNRESOLVED
    elif all(vote == ranking for vote in rankings):
        provenance = Pair.Provenance.UNANIMOUS
    else:
        provenance = Pair.Provenance.MAJORITY
    preference = None if ranking is None else first_two_preference(ranking)
    pair.status = pair_settle_ranking(
        pair_id=pair.pk,
        ranking=ranking,
        preference=preference,
        provenance=str(provenance),
        disagreement=disagreement,
        escalate=bool(reasons),
    )
    pair.consensus_ranking = ranking
    pair.consensus_preference = preference
    pair.provenance = provenance
    pair.disagreement = disagreement
    for reason, detail in reasons:
        escalation_record(pair=pair, reason=reason, detail=detail, disagreement=disagreement)
    if not reasons and ranking is not None:
        _maybe_schedule_retest(pair=pair, campaign=campaign, rng=rng)
    return Settled(Consensus(preference, str(provenance), disagreement, bool(reasons)), reasons)


def _maybe_schedule_retest(*, pair: Pair, campaign: Campaign, rng: random.Random | None) -> bool:
    """Send a share of completed pairs back for one more, different annotator."""
    rng = rng or random.Random()  # noqa: S311 - sampling, not security
    if campaign.retest_share <= 0 or rng.random() >= campaign.retest_share:
        return False
    if Assignment.objects.filter(pair=pair, kind=Assignment.Kind.RETEST).exists():
        return False  # one re-test per pair
    if not retest_taker_exists(campaign=campaign, pair_id=pair.pk):
        return False  # nobody could take it: the pair would wait in annotation for good
    # Only a pair with no free slot left gets one more: running this twice adds one slot.
    return pair_reopen_for_retest(pair_id=pair.pk)


def _retest_recorded(*, pair: Pair, label: Label) -> None:
    # Back out of the queue, unless an escalation or a decision moved the pair meanwhile.
    pair_retest_done(pair_id=pair.pk)
    _retest_check(pair=pair, label=label)


def _retest_check(*, pair: Pair, label: Label) -> Standing:
    """Escalate a re-test that contradicts the pair's consensus or carries a flag, under the
    pair's row lock (its submit, or a change of it or of a regular label); idempotent, as
    ``escalation_open`` adds a reason to the open escalation once.

    Returns the escalation reasons the re-test now stands for (whether or not the campaign's
    rules let them escalate), each with its detail and disagreement: a change must not
    withdraw those, and re-states them.
    """
    campaign = pair.campaign
    rules = escalation_rules_of(campaign.escalation_rules)
    has_consensus = pair.provenance in (
        Pair.Provenance.UNANIMOUS,
        Pair.Provenance.MAJORITY,
        Pair.Provenance.DAWID_SKENE,
    )
    if campaign.item_kind == ItemKind.RANKING:
        contradiction, disagreement = _ranking_retest_contradiction(pair=pair, label=label)
    else:
        regular = [vote.preference for vote in _regular_votes(pair.pk)]
        disagreement = pair_disagreement(
            [*regular, label.preference], max_value=_max_value(campaign)
        )
        said, consensus = label.preference, pair.consensus_preference
        contradicts = consensus is not None and direction(said) != direction(consensus)
        contradiction = f"re-test said {said}, consensus {consensus}" if contradicts else None
    standing: Standing = {}
    if has_consensus and contradiction is not None:
        standing[Escalation.Reason.RETEST_CONTRADICTION] = (contradiction, disagreement)
        if rules.get("retest_contradiction", True):
            escalation_open(
                pair=pair,
                reason=Escalation.Reason.RETEST_CONTRADICTION,
                detail=contradiction,
                disagreement=disagreement,
            )
    if label.flags:
        flagged = "re-test flags: " + ", ".join(label.flags)
        standing[Escalation.Reason.FLAGGED] = (flagged, disagreement)
        if rules.get("flags", True):
            escalation_open(
                pair=pair,
                reason=Escalation.Reason.FLAGGED,
                detail=flagged,
                disagreement=disagreement,
            )
    return standing


def _best_group(ranking: Sequence[Sequence[int]]) -> str:
    return " = ".join(str(index) for index in sorted(ranking[0]))


def _ranking_retest_contradiction(*, pair: Pair, label: Label) -> tuple[str | None, float]:
    """A K-wise re-test against the consensus ranking: (the contradiction's detail or None,
    the disagreement of the regular rankings and the re-test's).

    The re-test contradicts when its best group shares no response with the consensus's best
    group: the ranking analogue of a re-test that prefers the other side.
    """
    rankings = [ranking for ranking, _flags in _ranking_votes(pair.pk)]
    retest = label.ranking
    if retest:
        rankings.append(retest)
    size = sum(len(group) for group in rankings[0]) if rankings else 0
    disagreement = ranking_disagreement(rankings, size)
    consensus = pair.consensus_ranking
    if retest is None or consensus is None or not retest_contradicts(retest, consensus):
        return None, disagreement
    detail = f"re-test ranked {_best_group(retest)} best, consensus {_best_group(consensus)} best"
    return detail, disagreement
