"""Named hooks: how annotation (the lowest layer) lets the apps above it act, without importing
them.

Layers: ``annotation`` (work in) < ``reviewers`` (verdicts) < ``scoring`` (models and data sets).
A lower layer never imports a higher one; where it must let a higher one know something
happened, or ask it something, it calls a hook here, and the higher app registers its receiver
in its ``AppConfig.ready()``. A hook is a plain list of callables, called in order of
registration with keyword arguments, in the caller's thread and transaction: a receiver that
must only run after the commit registers itself through ``transaction.on_commit``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Hook:
    """A named list of receivers (callables taking keyword arguments only)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._receivers: list[Callable[..., Any]] = []

    def register(self, receiver: Callable[..., Any]) -> Callable[..., Any]:
        """Add a receiver (once: registering the same callable again does nothing)."""
        if receiver not in self._receivers:
            self._receivers.append(receiver)
        return receiver

    def __call__(self, **kwargs: Any) -> list[Any]:
        """Call every receiver; their results, in order of registration."""
        return [receiver(**kwargs) for receiver in self._receivers]

    def first(self, **kwargs: Any) -> Any:
        """Ask the receivers in order; the first result that is not None, else None."""
        for receiver in self._receivers:
            result = receiver(**kwargs)
            if result is not None:
                return result
        return None

    def __repr__(self) -> str:
        return f"<Hook {self.name}: {len(self._receivers)} receivers>"


# A label that counts for its pair was recorded: called inline inside ``label_submit``'s
# transaction, with the pair's row locked and read under the lock (``pair``, ``label``).
# reviewers computes the consensus here, so concurrent submits decide it exactly once.
label_recorded = Hook("label_recorded")

# Any label was recorded, gold checks included: called inline inside ``label_submit``'s
# transaction after ``label_recorded`` (``assignment``, ``label``; the assignment's campaign
# carries the membership its access helper read). reviewers measures the annotator here
# (qualification, quarantine); a receiver returns at once when its campaign asks for neither.
label_submitted = Hook("label_submitted")

# An annotator changed a label of theirs (within the grace period): called inline inside
# ``label_change``'s transaction with the pair's row locked; reviewers recomputes the consensus.
label_changed = Hook("label_changed")

# The annotator just submitted ``assignment``: the model's view of the pair to show them, or
# None (scoring answers, and records that it was shown).
model_view_after_submit = Hook("model_view_after_submit")

# A member stopped reviewing a campaign: taken out of it, or made an annotator there; called
# inside ``member_remove``'s or ``member_add``'s transaction (``campaign_id``, ``user_id``).
# reviewers gives back the escalations they had claimed there, which would otherwise keep other
# experts out until the claim ran out.
member_stopped_reviewing = Hook("member_stopped_reviewing")

# A campaign's qualification settings (``qualification_gold_count``, ``qualification_threshold``)
# changed: called inside the change's transaction (``campaign``, holding the new values).
# reviewers judges its qualifying members again, who would otherwise wait for a check the
# lowered count no longer serves them, or stay held back under a threshold since lowered.
qualification_changed = Hook("qualification_changed")
