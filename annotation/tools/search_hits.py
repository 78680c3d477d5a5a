"""What every search backend shares: the hit, the error, and safe snippets.

The database backends ask for control characters as match markers (the corpus loader strips
control characters from documents), and `render_snippet` turns them into <mark> after escaping
everything else. `annotation.tools.search` chooses a backend; the backends import only this.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from html import escape
from typing import Protocol
from urllib.parse import urlsplit

from core.errors import Unavailable, UpstreamFailed

MATCH_START = "\x02"
MATCH_STOP = "\x03"
MAX_QUERY_CHARS = 500
MAX_K = 50

# C0 controls other than tab and newline; our match markers are among them.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WORD = re.compile(r"\w+", re.UNICODE)


class SearchError(UpstreamFailed):
    """The search could not be carried out (bad configuration, remote service down)."""

    code = "search_failed"


class SearchTimedOut(Unavailable, SearchError):
    """The search ran past its time limit (``SEARCH_TIMEOUT_S``) and the database stopped it."""

    code = "search_timed_out"


@dataclass(frozen=True)
class SearchHit:
    title: str
    snippet: str  # safe HTML: escaped text with the matches in <mark>
    source: str
    score: float
    document_id: int | None = None

    @property
    def url(self) -> str:
        """`source` when it is a web link safe to put in an href, else ""."""
        return source_url(self.source)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class SearchBackend(Protocol):
    name: str

    def search(self, query: str, k: int, *, corpus_id: int | None = None) -> list[SearchHit]: ...


def source_url(source: str) -> str:
    scheme = urlsplit(source.strip()).scheme.lower()
    return source.strip() if scheme in {"http", "https"} else ""


def strip_control_chars(text: str) -> str:
    return _CONTROL_CHARS.sub("", text)


def clean_query(query: str) -> str:
    """The query as the backends receive it: no control characters, bounded, trimmed."""
    return strip_control_chars(query)[:MAX_QUERY_CHARS].strip()


def clamp_k(k: int) -> int:
    return max(1, min(int(k), MAX_K))


def render_snippet(marked: str) -> str:
    """Escape `marked` as HTML and turn the backend's match markers into <mark> elements.

    Markers that do not pair up (a stray one in a document loaded some other way) never yield
    unbalanced tags: a start inside a match and a stop outside one are dropped.
    """
    parts: list[str] = []
    inside = False
    for piece in re.split(f"([{MATCH_START}{MATCH_STOP}])", marked):
        if piece == MATCH_START:
            if not inside:
                parts.append("<mark>")
                inside = True
        elif piece == MATCH_STOP:
            if inside:
                parts.append("</mark>")
                inside = False
        elif piece:
            parts.append(escape(strip_control_chars(piece), quote=True))
    if inside:
        parts.append("</mark>")
    return "".join(parts)


def query_words(query: str) -> list[str]:
    """The plain words of a query, without operators, quotes or negated words."""
    words: list[str] = []
    for token in query.split():
        if token.startswith("-") or token.upper() in {"OR", "AND", "NOT"}:
            continue
        words.extend(_WORD.findall(token))
    return words


def highlight_words(text: str, words: Iterable[str]) -> str:
    """Safe HTML of plain `text` with whole-word, case-insensitive matches of `words` marked."""
    unique = sorted({word.lower() for word in words if word}, key=len, reverse=True)
    if not unique:
        return escape(text, quote=True)
    pattern = re.compile(r"\b(" + "|".join(re.escape(word) for word in unique) + r")\w*", re.I)
    marked = pattern.sub(
        lambda match: f"{MATCH_START}{match.group(0)}{MATCH_STOP}", strip_control_chars(text)
    )
    return render_snippet(marked)
