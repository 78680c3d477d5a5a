"""Decontamination: word 13-grams of the campaign's evaluation prompts, and the index that finds
a pool pair sharing one."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q

from annotation.models import Campaign
from scoring.models import EvaluationItem, EvaluationPrompt, EvaluationSet

NGRAM = 13


_WORD = re.compile(r"[^\W_]+")


# --- Decontamination ----------------------------------------------------------------------


def normalised_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def word_ngrams(words: Sequence[str], n: int = NGRAM) -> Iterator[tuple[str, ...]]:
    for start in range(len(words) - n + 1):
        yield tuple(words[start : start + n])


@dataclass
class EvaluationIndex:
    """13-grams of evaluation prompts, and the whole word sequence of shorter ones."""

    ngrams: set[int] = field(default_factory=set)
    short_prompts: set[tuple[str, ...]] = field(default_factory=set)
    prompts: int = 0

    def add(self, text: str) -> None:
        words = normalised_words(text)
        if not words:
            return
        self.prompts += 1
        if len(words) < NGRAM:
            self.short_prompts.add(tuple(words))
            return
        self.ngrams.update(hash(gram) for gram in word_ngrams(words))

    def contaminates(self, turns: Iterable[str]) -> bool:
        if not self.ngrams and not self.short_prompts:
            return False
        for text in turns:
            words = normalised_words(text)
            if tuple(words) in self.short_prompts:
                return True
            if any(hash(gram) in self.ngrams for gram in word_ngrams(words)):
                return True
        return False


def turn_texts(conversation: Any) -> list[str]:
    """The text of each turn of a stored conversation (what decontamination compares), and,
    with several user turns, those joined by newlines: an evaluation set's multi-turn prompt
    is indexed so (``scoring.evaluation``), and its 13-grams may cross turns, or all its turns
    be shorter than 13 words, so no single turn would ever match it."""
    turns = [turn for turn in conversation or [] if isinstance(turn, Mapping)]
    texts = [str(turn.get("content", "")) for turn in turns]
    user_turns = [str(turn.get("content", "")) for turn in turns if turn.get("role") == "user"]
    if len(user_turns) > 1:
        texts.append("\n".join(user_turns))
    return texts


def evaluation_index(
    *, campaign: Campaign, set_names: Sequence[str] | None = None
) -> EvaluationIndex:
    index = EvaluationIndex()
    prompts = EvaluationPrompt.objects.filter(campaign=campaign)
    if set_names:
        prompts = prompts.filter(set_name__in=set_names)
    for text in prompts.values_list("text", flat=True).iterator(chunk_size=2000):
        index.add(text)
    # Uploaded evaluation sets (scoring.evaluation): the campaign's and the shared ones, so one
    # upload serves both evaluation and decontamination.
    items = EvaluationItem.objects.filter(
        Q(evaluation_set__campaign=campaign) | Q(evaluation_set__campaign__isnull=True)
    )
    if set_names:
        items = items.filter(evaluation_set__name__in=set_names)
    for text in items.values_list("prompt", flat=True).iterator(chunk_size=2000):
        index.add(text)
    return index


def evaluation_sets_unknown(*, campaign: Campaign, set_names: Sequence[str]) -> list[str]:
    """The names that match no evaluation set the campaign's decontamination reads (its
    uploaded prompt sets, its own and the shared evaluation sets), sorted: refused up front,
    since decontaminating against nothing is silent."""
    wanted = set(set_names)
    if not wanted:
        return []
    known = set(
        EvaluationPrompt.objects.filter(campaign=campaign, set_name__in=wanted)
        .values_list("set_name", flat=True)
        .distinct()
    )
    known.update(
        EvaluationSet.objects.filter(Q(campaign=campaign) | Q(campaign__isnull=True))
        .filter(name__in=wanted)
        .values_list("name", flat=True)
    )
    return sorted(wanted - known)
