"""``TranscriptScoring``: the scoring methods a torch ``RewardModel`` and an ``OnnxRewardModel``
share, built on the one method each implements itself, ``rewards_for_ids``.

Texts are built by :mod:`.formatting` and tokenized with the model's window; identical
transcripts are scored once, so equal responses get exactly equal rewards, and
``p(A ≻ B) = sigmoid(r(x, A) − r(x, B))``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from transformers import PreTrainedTokenizerBase

from .formatting import Conversation, EncodedTranscripts, encode_transcripts, render_transcript

ScoredItem = tuple[Conversation, str]
ComparedItem = tuple[Conversation, str, str]


def sigmoid(values: np.ndarray) -> np.ndarray:
    # tanh form is overflow-free and gives exactly 0.5 at 0.
    return 0.5 * (1.0 + np.tanh(0.5 * values))


class TranscriptScoring:
    """Rendering, encoding and scoring of (conversation, response) items for a model class
    that sets ``tokenizer`` and ``max_length`` and implements ``rewards_for_ids``."""

    tokenizer: PreTrainedTokenizerBase
    max_length: int

    def rewards_for_ids(
        self,
        input_ids: Sequence[Sequence[int]],
        *,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        raise NotImplementedError

    def render(self, conversation: Conversation, response: str) -> str:
        return render_transcript(self.tokenizer, conversation, response)

    def encode(self, items: Sequence[ScoredItem]) -> EncodedTranscripts:
        texts = [self.render(conversation, response) for conversation, response in items]
        return encode_transcripts(self.tokenizer, texts, self.max_length)

    def score(self, conversation: Conversation, response: str) -> float:
        return float(self.score_batch([(conversation, response)])[0])

    def score_batch(self, items: Sequence[ScoredItem]) -> np.ndarray:
        """Rewards r(x, y), one float per (conversation, response) item."""
        texts = [self.render(conversation, response) for conversation, response in items]
        return self._rewards_for_texts(texts)

    def prob_a_better(self, conversation: Conversation, response_a: str, response_b: str) -> float:
        return float(self.prob_a_better_batch([(conversation, response_a, response_b)])[0])

    def prob_a_better_batch(self, items: Sequence[ComparedItem]) -> np.ndarray:
        """sigmoid(r(x, A) − r(x, B)) per (conversation, response_a, response_b) item."""
        texts = [self.render(conversation, a) for conversation, a, _ in items]
        texts += [self.render(conversation, b) for conversation, _, b in items]
        rewards = self._rewards_for_texts(texts)
        count = len(items)
        return sigmoid(rewards[:count] - rewards[count:])

    def _rewards_for_texts(self, texts: Sequence[str]) -> np.ndarray:
        # Identical transcripts are scored once, so equal responses get exactly equal rewards.
        unique_texts = list(dict.fromkeys(texts))
        position = {text: index for index, text in enumerate(unique_texts)}
        encoded = encode_transcripts(self.tokenizer, unique_texts, self.max_length)
        unique_rewards = self.rewards_for_ids(encoded.input_ids)
        return unique_rewards[[position[text] for text in texts]]
