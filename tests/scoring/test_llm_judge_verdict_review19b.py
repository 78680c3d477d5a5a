"""Review 19b: the LLM judge's answer is read without upper-casing it first. "a" is an
article: "After a close look, B" read as A, and asked both ways round such a judge said
nothing (0.5) where it had a clear verdict. A reasoning model's <think> block is not its
answer either."""

from __future__ import annotations

import pytest

from scoring.datasets.llm_judge import _verdict


@pytest.mark.parametrize(
    ("answer", "p"),
    [
        ("A", 1.0),
        ("b", 0.0),
        (" **B** ", 0.0),
        ("A. Definitely A.", 1.0),
        ("After a close look, B is better.", 0.0),
        ("Response B, as a whole, is more helpful.", 0.0),
        ("<think>A is wordy, and a reader wants brevity.</think>\n\nB", 0.0),
        ("I cannot tell.", 0.5),
        ("a or b, hard to say", 0.5),
    ],
)
def test_the_verdict_is_the_letter_the_judge_chose(answer, p):
    assert _verdict(answer) == p
