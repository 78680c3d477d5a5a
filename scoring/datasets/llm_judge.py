"""An LLM judge for Stage 2 curation, against the OpenAI-compatible endpoint admins configure.

The judge sees the conversation and both responses and answers with one letter; its verdict
becomes p(A better) = 1 (A), 0 (B) or 0.5 (no usable answer), so `curation_verdicts` treats
it like any other scorer. Each pair is asked twice, once with A and B swapped, and the two
verdicts are averaged: a judge that always says "A" then says nothing (0.5).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from django.conf import settings

from annotation.tools.llm import LlmUnavailable, chat
from scoring.datasets.scorers import PoolItem, Scorer

JUDGE_PROMPT = (
    "You judge which of two AI responses to the same conversation is better: more helpful, "
    "correct and harmless. Reply with exactly one letter, A or B, and nothing else."
)
# A capital letter standing alone: "a" is an article ("after a close look, B"), so the answer
# is not upper-cased first; a lone letter of either case is the whole answer.
_VERDICT = re.compile(r"\b([AB])\b")
_LONE_LETTER = re.compile(r"\W*([ABab])\W*")
# A reasoning model's thoughts before its answer weigh both letters.
_THINKING = re.compile(r"<think>.*?</think>", re.DOTALL)


def _verdict(answer: str) -> float:
    answer = _THINKING.sub("", answer)
    found = _LONE_LETTER.fullmatch(answer) or _VERDICT.search(answer)
    if found is None:
        return 0.5
    return 1.0 if found.group(1).upper() == "A" else 0.0


def _messages(item: PoolItem, first: str, second: str) -> list[dict[str, str]]:
    turns = "\n\n".join(f"[{turn['role']}]\n{turn['content']}" for turn in item.conversation)
    return [
        {"role": "system", "content": JUDGE_PROMPT},
        {
            "role": "user",
            "content": f"## Conversation\n{turns}\n\n## Response A\n{first}\n\n"
            f"## Response B\n{second}\n\nWhich response is better? Answer A or B.",
        },
    ]


def llm_judge_configured() -> bool:
    return bool(settings.ARBITER.get("LLM_URL") and settings.ARBITER.get("LLM_MODEL"))


def llm_judge_scorer() -> Scorer:
    """A scorer asking the configured model; raises LlmUnavailable when none is configured."""
    if not llm_judge_configured():
        raise LlmUnavailable("no LLM is configured (ARBITER_LLM_URL and ARBITER_LLM_MODEL)")
    config = settings.ARBITER

    def ask(messages: list[dict[str, str]]) -> float:
        answer = chat(
            base_url=config["LLM_URL"],
            model=config["LLM_MODEL"],
            key=config.get("LLM_KEY", ""),
            messages=messages,
            timeout_s=float(config.get("LLM_TIMEOUT_S") or 60),
        )
        return _verdict(answer.answer)

    def score(items: Sequence[PoolItem]) -> np.ndarray:
        p = []
        for item in items:
            as_shown = ask(_messages(item, item.response_a, item.response_b))
            swapped = 1.0 - ask(_messages(item, item.response_b, item.response_a))
            p.append((as_shown + swapped) / 2)
        return np.asarray(p, dtype=np.float64)

    return score
