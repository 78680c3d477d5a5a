"""Untrusted pair text to safe HTML for the workspace.

Prompts and responses come from imported data and may hold anything, hostile HTML included.
Two layers keep it inert:
1. markdown-it-py with raw HTML disabled, so `<script>` in the data is escaped and shown as
   text; code fences are highlighted by Pygments with CSS classes, never inline styles.
2. nh3 (ammonia) sanitises the produced HTML against an allow-list, so a bug in layer 1 or a
   Pygments lexer still cannot smuggle in a tag, an event handler or a `javascript:` URL.
Images are never loaded: they become a link the annotator may choose to open.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_all_lexers, get_lexer_by_name
from pygments.lexers.special import TextLexer
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

from core.text import combining_marks_class

# Lexers are regular-expression machines; beyond this size a code block is shown plain so
# that one pathological response cannot stall a page.
MAX_HIGHLIGHT_CHARS = 100_000
LINK_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer nofollow"

_PYGMENTS_CLASSES = frozenset(name for name in STANDARD_TYPES.values() if name)
_FORMATTER = HtmlFormatter(nowrap=True)

ALLOWED_TAGS = frozenset(
    {
        "p",
        "br",
        "hr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "ul",
        "ol",
        "li",
        "strong",
        "em",
        "s",
        "del",
        "code",
        "pre",
        "a",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "span",
        "div",
    }
)
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
# `language-<name>` on <code> names the lexer (Pygments' first alias), as other Markdown
# renderers do; the tools panel reads it to pick the code runner's language.
_LANGUAGE_CLASSES = frozenset(
    f"language-{aliases[0]}" for _name, aliases, _files, _mimes in get_all_lexers() if aliases
)
ALLOWED_CLASSES = {
    "div": {"code-block", "code-lang"},
    "code": set(_LANGUAGE_CLASSES),
    "span": set(_PYGMENTS_CLASSES) | {"md-image"},
    "a": {"md-image"},
}
# Dropped with their content, not just unwrapped: their text is never meant to be read.
CLEAN_CONTENT_TAGS = frozenset({"script", "style", "template", "iframe", "object", "noscript"})

ROLE_LABELS = {"system": "System", "user": "User", "assistant": "Assistant"}


def _lexer_for(language: str):  # noqa: ANN202 - a Pygments Lexer, or None
    if not language:
        return None
    try:
        return get_lexer_by_name(language, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


def _render_fence(self, tokens, idx, options, env) -> str:  # noqa: ANN001 - markdown-it API
    token = tokens[idx]
    language = token.info.strip().split(maxsplit=1)[0] if token.info.strip() else ""
    label = f'<div class="code-lang">{escapeHtml(language)}</div>' if language else ""
    lexer = _lexer_for(language)
    known = f"language-{lexer.aliases[0]}" if lexer is not None and lexer.aliases else ""
    code_class = f' class="{known}"' if known in _LANGUAGE_CLASSES else ""
    lexer = lexer or TextLexer(stripnl=False, ensurenl=False)
    if len(token.content) > MAX_HIGHLIGHT_CHARS:
        body = escapeHtml(token.content)
    else:
        # Escaped spans with token classes: no wrapper, no inline styles.
        body = highlight(token.content, lexer, _FORMATTER)
    return f'<div class="code-block">{label}<pre><code{code_class}>{body}</code></pre></div>\n'


def _render_image(self, tokens, idx, options, env) -> str:  # noqa: ANN001 - markdown-it API
    # Loading a remote image would tell its host who is annotating what; show a link instead.
    token = tokens[idx]
    alt = escapeHtml(self.renderInlineAsText(token.children or [], options, env))
    description = f"image: {alt}" if alt else "image"
    src = escapeHtml(str(token.attrGet("src") or ""))
    return f'<a class="md-image" href="{src}">[{description}, not loaded]</a>'


def _build_markdown() -> MarkdownIt:
    # breaks: chat responses use single newlines as line breaks.
    md = MarkdownIt(
        "commonmark", {"html": False, "linkify": False, "typographer": False, "breaks": True}
    )
    md.enable(["table", "strikethrough"])
    md.add_render_rule("fence", _render_fence)
    md.add_render_rule("code_block", _render_fence)
    md.add_render_rule("image", _render_image)
    return md


_MARKDOWN = _build_markdown()


def _keep_safe_links(tag: str, attribute: str, value: str) -> str | None:
    if tag == "a" and attribute == "href":
        scheme, colon, _rest = value.partition(":")
        if not colon or scheme.strip().lower() not in LINK_SCHEMES:
            return None
    return value


# Built once: the allow-lists are handed to the Rust side a single time, not on every call.
_CLEANER = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    clean_content_tags=set(CLEAN_CONTENT_TAGS),
    attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
    allowed_classes={tag: set(names) for tag, names in ALLOWED_CLASSES.items()},
    attribute_filter=_keep_safe_links,
    url_schemes=set(LINK_SCHEMES),
    url_relative="deny",
    link_rel=LINK_REL,
    set_tag_attribute_values={"a": {"target": "_blank"}},
    strip_comments=True,
)


def sanitize_html(html: str) -> str:
    """The allow-list pass: only the markup our Markdown renderer produces survives."""
    return _CLEANER.clean(html)


def render_markdown(text: str) -> SafeString:
    """Markdown from untrusted data as sanitised HTML, safe to put in a template."""
    if not text:
        return mark_safe("")  # noqa: S308 - the empty string
    html = _MARKDOWN.render(text)
    return mark_safe(sanitize_html(html))  # noqa: S308 - nh3's allow-list output


@dataclass(frozen=True)
class RenderedTurn:
    role: str  # one of ROLE_LABELS' keys, or "other"
    role_label: str
    html: SafeString


@dataclass(frozen=True)
class RenderedPair:
    turns: tuple[RenderedTurn, ...]
    response_a: SafeString  # empty for a ranking item, as is diff
    response_b: SafeString
    guideline: SafeString
    diff: SafeString = mark_safe("")  # noqa: S308 - the empty string
    # Ranking items: every response, in the order shown.
    responses: tuple[SafeString, ...] = ()


@functools.cache
def _diff_tokens() -> re.Pattern[str]:
    """Words, runs of white space, flags (two regional indicators) and single other
    characters, each with what extends it on screen: combining marks (an accent, a Devanagari
    vowel sign, an emoji's variation selector), emoji skin tones, and a zero-width joiner with
    the character it joins (a family emoji). Split from it, a diff shows a vowel sign on a
    dotted circle, or the letters of a flag. `n % 2 == 1` against `== 0` differs in the one
    token "1"/"0". Built on first use."""
    marks = combining_marks_class(astral=True)
    extend = rf"(?:[{marks}\U0001F3FB-\U0001F3FF\u200c]|\u200d\S?)*"
    flag = r"[\U0001F1E6-\U0001F1FF]{2}"
    return re.compile(rf"(?:\w{extend})+|\s+|{flag}{extend}|[^\w\s]{extend}")


# Past this size a side, no diff is offered (its blocks are what an annotator compares).
MAX_DIFF_CHARS = 50_000
# Lines are matched first; changed blocks of lines are then compared word by word when each
# side holds at most this many tokens (the matcher is cubic in the worst case), or shown
# whole otherwise.
MAX_WORD_DIFF_TOKENS = 2_000


def _marked(removed: str, added: str) -> str:
    parts = []
    if removed:
        parts.append(f'<del class="diff-a" title="only in A">{escapeHtml(removed)}</del>')
    if added:
        parts.append(f'<ins class="diff-b" title="only in B">{escapeHtml(added)}</ins>')
    return "".join(parts)


def _word_diff(text_a: str, text_b: str) -> str:
    tokens_a, tokens_b = _diff_tokens().findall(text_a), _diff_tokens().findall(text_b)
    if len(tokens_a) > MAX_WORD_DIFF_TOKENS or len(tokens_b) > MAX_WORD_DIFF_TOKENS:
        return _marked(text_a, text_b)
    # autojunk (difflib's default) ignores tokens that make up over 1% of a side of 200
    # tokens or more (white space, "the"): without it, repetitive text takes the matcher
    # minutes (600 tokens of "x " against "y ": 45 s); with it, under half a second.
    matcher = difflib.SequenceMatcher(None, tokens_a, tokens_b)
    parts = []
    for tag, a_start, a_end, b_start, b_end in matcher.get_opcodes():
        removed, added = "".join(tokens_a[a_start:a_end]), "".join(tokens_b[b_start:b_end])
        parts.append(escapeHtml(removed) if tag == "equal" else _marked(removed, added))
    return "".join(parts)


def render_diff(text_a: str, text_b: str) -> SafeString:
    """The two responses' source text as one inline diff: A's words in <del>, B's in <ins>.

    Everything is escaped here (no Markdown), so the result is inert; empty when either side
    is longer than MAX_DIFF_CHARS.
    """
    if len(text_a) > MAX_DIFF_CHARS or len(text_b) > MAX_DIFF_CHARS:
        return mark_safe("")  # noqa: S308 - the empty string
    lines_a, lines_b = text_a.splitlines(keepends=True), text_b.splitlines(keepends=True)
    matcher = difflib.SequenceMatcher(None, lines_a, lines_b)
    parts = []
    for tag, a_start, a_end, b_start, b_end in matcher.get_opcodes():
        removed, added = "".join(lines_a[a_start:a_end]), "".join(lines_b[b_start:b_end])
        if tag == "equal":
            parts.append(escapeHtml(removed))
        elif tag == "replace":
            parts.append(_word_diff(removed, added))
        else:
            parts.append(_marked(removed, added))
    return mark_safe("".join(parts))  # noqa: S308 - every piece of text escaped above


def _content_text(content: Any) -> str:
    """Message content as text: a string, or a list of parts ({"type": "text", "text": …})."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, bytes | bytearray):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "\n\n".join(parts)
    return "" if content is None else str(content)


def render_conversation(conversation: Any) -> tuple[RenderedTurn, ...]:
    """Each turn with its role; tolerant of odd shapes, since the data is imported."""
    if not isinstance(conversation, list):
        conversation = [] if conversation is None else [{"role": "user", "content": conversation}]
    turns = []
    for message in conversation:
        if isinstance(message, dict):
            raw_role, content = message.get("role"), message.get("content")
        else:
            raw_role, content = None, message
        role = raw_role.lower() if isinstance(raw_role, str) else ""
        if role in ROLE_LABELS:
            label = ROLE_LABELS[role]
        else:
            label = raw_role if isinstance(raw_role, str) and raw_role else "Message"
            role = "other"
        turns.append(
            RenderedTurn(role=role, role_label=label, html=render_markdown(_content_text(content)))
        )
    return tuple(turns)


def render_pair(shown: dict[str, Any]) -> RenderedPair:
    """A pair as `annotation.selectors.shown_pair` returns it, rendered for the workspace.

    A ranking item (``responses``) is shown as its K responses, never as A and B
    (`annotation/_pair.html`): its response_a and response_b, which repeat the first two, are
    neither rendered again nor diffed, and stay empty here."""
    turns = render_conversation(shown.get("conversation"))
    guideline = render_markdown(shown.get("annotation_guideline") or "")
    responses = shown.get("responses") or ()
    if responses:
        return RenderedPair(
            turns=turns,
            response_a=mark_safe(""),  # noqa: S308 - the empty string
            response_b=mark_safe(""),  # noqa: S308 - the empty string
            guideline=guideline,
            responses=tuple(render_markdown(text) for text in responses),
        )
    text_a, text_b = shown.get("response_a") or "", shown.get("response_b") or ""
    return RenderedPair(
        turns=turns,
        response_a=render_markdown(text_a),
        response_b=render_markdown(text_b),
        guideline=guideline,
        diff=render_diff(text_a, text_b),
    )
