"""Review 19f: the word diff never splits what is one character on screen (a base and its
combining marks, a flag, an emoji joined by zero-width joiners or given a skin tone)."""

from __future__ import annotations

import re

import pytest

from annotation.rendering import render_diff


def _marked(html: str) -> list[str]:
    """The texts of the diff's marked pieces, in order."""
    return re.findall(r"<(?:del|ins) [^>]*>(.*?)</(?:del|ins)>", html)


@pytest.mark.parametrize(
    ("text_a", "text_b", "removed", "added"),
    [
        # A Devanagari vowel sign stays on its consonant (split, it sat on a dotted circle).
        ("\u0915\u0940 x", "\u0915\u093e x", "\u0915\u0940", "\u0915\u093e"),
        # A decomposed accent stays with its letter, and its word is one token.
        ("un cafe\u0301 ici", "un cafe ici", "cafe\u0301", "cafe"),
        # A flag is two regional indicators: split, it showed as the letters F and R.
        ("flag \U0001f1eb\U0001f1f7 ok", "flag \U0001f1eb\U0001f1ee ok", "🇫🇷", "🇫🇮"),
        # A family joined by zero-width joiners, and a skin tone.
        (
            "fam \U0001f468\u200d\U0001f469\u200d\U0001f467 ok",
            "fam \U0001f468\u200d\U0001f469\u200d\U0001f466 ok",
            "\U0001f468\u200d\U0001f469\u200d\U0001f467",
            "\U0001f468\u200d\U0001f469\u200d\U0001f466",
        ),
        ("ok \U0001f44d\U0001f3fd!", "ok \U0001f44d\U0001f3ff!", "👍🏽", "👍🏿"),
    ],
)
def test_a_changed_character_is_marked_whole(text_a, text_b, removed, added):
    assert _marked(render_diff(text_a, text_b)) == [removed, added]


def test_plain_tokens_are_as_before():
    html = render_diff("return n % 2 == 1 <b>", "return n % 2 == 0 <b>")
    assert _marked(html) == ["1", "0"]
    assert html.endswith(" &lt;b&gt;")
