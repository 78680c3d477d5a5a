"""Exact and near-duplicate pairs: the exact key of ``dedupe_key`` and MinHash (datasketch)
over word shingles, with an LSH index that finds an earlier pair whose estimated Jaccard
similarity reaches a threshold.

Shingles are word 5-grams (lowercase, punctuation dropped, each CJK, kana or hangul character a
word, as in decontamination) that never cross a turn or a response, so the A/B order does not
matter; a text shorter than five words is one shingle. A ranking item is compared by all of its
responses, not its first two. Two pairs are near-duplicates when their conversations AND their
responses (both together) each reach the threshold: the same prompt with other responses is
another preference pair, not a repeat. The LSH index holds one MinHash of both parts' shingles
(the combined similarity is never below the smaller of the two), and each candidate it returns
is confirmed part by part against the threshold.
"""

from __future__ import annotations

import functools
import hashlib
import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from annotation.importers import canonical_json, nfc
from scoring.datasets.curation.decontamination import normalised_words, word_ngrams

if TYPE_CHECKING:
    from datasketch import MinHash

SHINGLE_WORDS = 5
NUM_PERM = 128
DEFAULT_NEAR_DUPLICATE_THRESHOLD = 0.8
# The highest threshold the LSH index is built for (see ``DuplicateFinder``).
LSH_MAX_THRESHOLD = 0.95
# The lowest threshold taken: below half the shingles shared, two pairs are no repeats, and the
# index datasketch builds for a tiny threshold (bands of one row) makes nearly every pair a
# candidate of every other, checked one by one: quadratic in the pairs.
MIN_NEAR_DUPLICATE_THRESHOLD = 0.5
EXACT, NEAR = "exact", "near"
_SCHEME = "affine32"  # datasketch 2's default: 32-bit hash values


def dedupe_key(
    conversation: Sequence[Mapping[str, str]], response_a: str, response_b: str, *more: str
) -> int:
    """64 bits of a digest of the conversation and the responses in any order: the two of an
    A/B pair, or every response of a ranking item (``more``: its third and later ones). Texts
    count in NFC form, as in the import's content hash: the same words with precomposed or
    decomposed accents are one pair (sorted after normalising, so the order agrees too)."""
    first, second, *rest = sorted(nfc(text) for text in (response_a, response_b, *more))
    digest = hashlib.blake2b(canonical_json(conversation, first, second), digest_size=8)
    # JSON strings delimit themselves; an A/B pair's key is the same as before.
    for text in rest:
        digest.update(json.dumps(text, ensure_ascii=False).encode())
    return int.from_bytes(digest.digest(), "big")


def text_shingles(texts: Iterable[str]) -> set[bytes]:
    shingles: set[bytes] = set()
    for text in texts:
        words = normalised_words(text)
        if not words:
            continue
        if len(words) < SHINGLE_WORDS:
            shingles.add(" ".join(words).encode())
        else:
            shingles.update(" ".join(gram).encode() for gram in word_ngrams(words, SHINGLE_WORDS))
    return shingles


def pair_texts(conversation: Any, response_a: str, response_b: str, *more: str) -> list[str]:
    turns = [
        str(turn.get("content", "")) for turn in conversation or [] if isinstance(turn, Mapping)
    ]
    return [*turns, response_a, response_b, *more]


@functools.cache
def _permutations(num_perm: int) -> Any:
    # Drawing the permutations is most of a new MinHash's cost: draw them once per size.
    from datasketch import MinHash  # heavy (scipy): imported by curation runs, not web workers

    return MinHash(num_perm=num_perm, seed=1, scheme=_SCHEME).permutations


def _hash32(shingle: bytes) -> int:
    # CRC-32: several times faster than datasketch's SHA-1 and the same in every process.
    # (Python's own hash() is salted per process, so near the threshold a pair was found a
    # near duplicate in one run and not in the next.)
    return zlib.crc32(shingle)


def _minhash(shingles: Iterable[bytes], num_perm: int) -> MinHash:
    from datasketch import MinHash

    minhash = MinHash(
        num_perm=num_perm,
        seed=1,
        permutations=_permutations(num_perm),
        scheme=_SCHEME,
        hashfunc=_hash32,
    )
    batch = list(shingles)
    if batch:
        minhash.update_batch(batch)
    return minhash


@dataclass(frozen=True)
class PairSketch:
    """MinHashes of a pair: its conversation, its responses and both (for the LSH index)."""

    conversation: MinHash
    responses: MinHash
    combined: MinHash


def pair_sketch(
    conversation: Any, response_a: str, response_b: str, *more: str, num_perm: int = NUM_PERM
) -> PairSketch:
    texts = pair_texts(conversation, response_a, response_b, *more)
    turns = len(texts) - 2 - len(more)
    # Tagged, so that a conversation's shingle never matches a response's.
    context = {b"c " + shingle for shingle in text_shingles(texts[:turns])}
    responses = {b"r " + shingle for shingle in text_shingles(texts[turns:])}
    context_sketch, responses_sketch = _minhash(context, num_perm), _minhash(responses, num_perm)
    combined = context_sketch.copy()
    combined.merge(responses_sketch)  # the MinHash of the union: element-wise minimum
    return PairSketch(context_sketch, responses_sketch, combined)


def minhash_similarity(
    first: tuple[Any, str, str], second: tuple[Any, str, str], *, num_perm: int = NUM_PERM
) -> tuple[float, float]:
    """Estimated Jaccard similarity of two pairs' (conversation, responses) shingles; each
    pair is given as (conversation, response A, response B)."""
    one, other = pair_sketch(*first, num_perm=num_perm), pair_sketch(*second, num_perm=num_perm)
    return (
        float(one.conversation.jaccard(other.conversation)),
        float(one.responses.jaccard(other.responses)),
    )


def near_duplicate_threshold_problem(threshold: float | None) -> str:
    """Why ``threshold`` cannot be a near-duplicate threshold, or "" (None: no search)."""
    if threshold is None or MIN_NEAR_DUPLICATE_THRESHOLD <= threshold <= 1.0:
        return ""
    return (
        f"near_duplicate_threshold must lie between {MIN_NEAR_DUPLICATE_THRESHOLD} and 1 "
        f"(null for exact repeats only), got {threshold}"
    )


class _KeySet:
    """A set of 64-bit keys in about 8 bytes a key (a Python set of ints takes about 90): the
    keys seen lately in a small set, the rest in one sorted array that they are merged into
    once they number a sixteenth of it (merged in linear time: each key is copied about 17
    times over a run of millions, 0.02 s per million per merge). A lookup is a set probe
    and a binary search."""

    _MIN_RECENT = 1 << 16

    def __init__(self) -> None:
        self._sorted = np.empty(0, dtype=np.uint64)
        self._recent: set[int] = set()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def __contains__(self, key: int) -> bool:
        if key in self._recent:
            return True
        at = int(np.searchsorted(self._sorted, np.uint64(key)))
        return at < len(self._sorted) and int(self._sorted[at]) == key

    def add_new(self, key: int) -> None:
        """Add a key known not to be in the set (the caller has just looked)."""
        self._recent.add(key)
        if len(self._recent) >= max(self._MIN_RECENT, len(self._sorted) // 16):
            self._merge_recent()

    def _merge_recent(self) -> None:
        new = np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent))
        new.sort()
        # Where each new key lands in the merged array: its place among the old keys, plus
        # the new keys before it.
        places = np.searchsorted(self._sorted, new) + np.arange(len(new))
        merged = np.empty(len(self._sorted) + len(new), dtype=np.uint64)
        old_places = np.ones(len(merged), dtype=bool)
        old_places[places] = False
        merged[places] = new
        merged[old_places] = self._sorted
        self._sorted = merged
        self._recent.clear()


class DuplicateFinder:
    """Remembers the pairs it has seen; ``check`` says whether a new one repeats one of them,
    exactly (``EXACT``) or nearly (``NEAR``: estimated Jaccard similarity of the conversations
    and of the responses both at least ``threshold``; None turns near-duplicate search off),
    and remembers it when it does not. Memory per pair: one 64-bit key (``_KeySet``: about 8
    bytes); with MinHash also two sets of 128 32-bit hash values (1 KB) and the LSH bands of a
    third."""

    def __init__(self, *, threshold: float | None, num_perm: int = NUM_PERM) -> None:
        problem = near_duplicate_threshold_problem(threshold)
        if problem:
            raise ValueError(problem)
        self.threshold = threshold
        self.num_perm = num_perm
        self._exact = _KeySet()
        from datasketch import MinHashLSH

        # The LSH index only proposes candidates; ``check`` confirms each against the real
        # threshold. datasketch refuses a threshold above about 0.98 with 128 permutations (it
        # would need fewer than 2 bands), so the index is built for at most LSH_MAX_THRESHOLD
        # (3 bands of 42 rows): it proposes more candidates than one built for the real
        # threshold would, and pairs with identical sketches (threshold 1.0) share every band.
        self._lsh = (
            MinHashLSH(threshold=min(threshold, LSH_MAX_THRESHOLD), num_perm=num_perm)
            if threshold is not None
            else None
        )
        self._values: list[np.ndarray] = []

    def check(
        self,
        conversation: Sequence[Any],
        response_a: str,
        response_b: str,
        *more: str,
        remember: bool = True,
    ) -> str | None:
        """``more``: a ranking item's third and later responses. With ``remember`` False a
        pair that repeats none is not remembered (the export left it out of its files)."""
        key = dedupe_key(conversation, response_a, response_b, *more)
        if key in self._exact:
            return EXACT
        if remember:
            self._exact.add_new(key)
        if self._lsh is None or self.threshold is None:
            return None
        sketch = pair_sketch(conversation, response_a, response_b, *more, num_perm=self.num_perm)
        # datasketch keeps 32 bits of each hash value.
        values = np.stack([sketch.conversation.hashvalues, sketch.responses.hashvalues]).astype(
            np.uint32
        )
        # LSH candidates are probable matches: confirm each, part by part.
        for candidate in self._lsh.query(sketch.combined):
            similarity = np.mean(self._values[int(candidate)] == values, axis=1)
            if float(similarity.min()) >= self.threshold:
                return NEAR
        if not remember:
            return None
        self._lsh.insert(str(len(self._values)), sketch.combined)
        self._values.append(values)
        return None
