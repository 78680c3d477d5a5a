"""Decontamination: token 13-grams of the campaign's evaluation prompts (shorter prompts whole),
and the index that finds a pool pair sharing one."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q

from annotation.models import Campaign
from core.text import combining_marks_class
from scoring.models import EvaluationItem, EvaluationPrompt, EvaluationSet

NGRAM = 13
# A prompt of CONTAINED_MIN to NGRAM - 1 tokens contaminates a turn that holds its whole token
# sequence anywhere; a shorter one (1 to 7 tokens: "Tell me a joke", "什么是机器学习") only a
# turn that is that sequence and nothing else, as every prompt under 13 tokens did before:
# such phrases recur in unrelated prompts, and matching them inside a turn would drop pairs
# that merely quote a common question.
CONTAINED_MIN = 8

# Scripts written without spaces between words: each letter of Thai, Lao, Myanmar and Khmer,
# and each CJK ideograph (and extension A), kana and hangul syllable is a token of its own;
# any other run of letters and digits is one token. Combining marks (a vowel sign, a virama, an
# Arabic vowel mark) belong to the token they follow: they are no word characters to ``re``,
# so a Hindi word would break into pieces at each of its marks.
_UNSPACED = (
    r"\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff"
    r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
)
# Invisible inside a word: the soft hyphen, the word joiner and the zero-width no-break space.
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u2060\ufeff"))


@functools.cache
def _word_pattern() -> re.Pattern[str]:
    # Built on first use, by the jobs that tokenise. Marks of the Basic Multilingual Plane only
    # (every living script's): a class reaching past U+FFFF made tokenising about twice as slow.
    marks = combining_marks_class(astral=False)
    word = rf"[^\W_{_UNSPACED}]"
    return re.compile(rf"{word}+(?:[{marks}]+{word}*)*|(?=[^\W_])[{_UNSPACED}][{marks}]*")


# --- Decontamination ----------------------------------------------------------------------


def normalised_words(text: str) -> list[str]:
    """The tokens of ``text`` in NFKC form, lowercase: words (with their combining marks), and
    each character of a script written without spaces (CJK, kana, hangul, Thai, Lao, Myanmar,
    Khmer).

    NFKC first: in decomposed text (NFD) an accent is a combining mark, no word character, so
    "élève" would split apart and never match the same prompt typed precomposed; NFKC also
    folds full-width letters and ligatures. The index is built from stored texts at each run,
    so no stored value needs recomputing."""
    if not text.isascii():  # (a flag of the string: ASCII text holds none of them)
        text = text.translate(_INVISIBLE)
    return _word_pattern().findall(unicodedata.normalize("NFKC", text).lower())


def word_ngrams(words: Sequence[str], n: int = NGRAM) -> Iterator[tuple[str, ...]]:
    for start in range(len(words) - n + 1):
        yield tuple(words[start : start + n])


@dataclass
class EvaluationIndex:
    """Hashes (never the text, so memory stays bounded) of the evaluation prompts' token
    13-grams; of the whole token sequence of shorter prompts, by length, for those of at least
    CONTAINED_MIN tokens (found anywhere inside a turn) and apart for the shorter ones (found
    only as a whole turn)."""

    ngrams: set[int] = field(default_factory=set)
    contained: dict[int, set[int]] = field(default_factory=dict)
    # Hashes of the first CONTAINED_MIN tokens of the prompts in ``contained``: a turn's
    # position is checked against each length only where one of them starts there.
    contained_heads: set[int] = field(default_factory=set)
    whole_turn: set[int] = field(default_factory=set)
    prompts: int = 0

    def add(self, text: str) -> None:
        words = normalised_words(text)
        if not words:
            return
        self.prompts += 1
        if len(words) < CONTAINED_MIN:
            self.whole_turn.add(hash(tuple(words)))
        elif len(words) < NGRAM:
            self.contained.setdefault(len(words), set()).add(hash(tuple(words)))
            self.contained_heads.add(hash(tuple(words[:CONTAINED_MIN])))
        else:
            self.ngrams.update(hash(gram) for gram in word_ngrams(words))

    def contaminates(self, turns: Iterable[str]) -> bool:
        if not self.ngrams and not self.contained and not self.whole_turn:
            return False
        for text in turns:
            words = normalised_words(text)
            if self.whole_turn and hash(tuple(words)) in self.whole_turn:
                return True
            if self.contained and self._contains_a_prompt(words):
                return True
            if self.ngrams and any(hash(gram) in self.ngrams for gram in word_ngrams(words)):
                return True
        return False

    def _contains_a_prompt(self, words: Sequence[str]) -> bool:
        """Whether the token sequence of a prompt in ``contained`` appears in ``words``."""
        for start, head in enumerate(word_ngrams(words, CONTAINED_MIN)):
            if hash(head) not in self.contained_heads:
                continue
            for length, hashes in self.contained.items():
                if start + length <= len(words) and (
                    hash(tuple(words[start : start + length])) in hashes
                ):
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
