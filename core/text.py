"""Checks on text that every layer may use, the importers included (no Django here)."""

from __future__ import annotations

import functools
import re
import unicodedata


def encodes_as_utf8(text: str) -> bool:
    """Whether the text can be stored: a lone surrogate ("\\ud800", which JSON escapes and a
    command-line argument that is not UTF-8 decode to) cannot be encoded, and PostgreSQL (or a
    digest) refuses it; input checks call this to name the field instead."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def without_lone_surrogates(text: str) -> str:
    """``text`` with each lone surrogate shown as U+FFFD, as a byte that is not UTF-8 would be.

    A remote service's JSON may escape one ("\\ud800"; a pair decodes to its one character),
    and neither the database nor a response can encode it: what such a service sends is
    cleaned with this rather than refused, as its other odd text is."""
    return text if encodes_as_utf8(text) else _LONE_SURROGATE.sub("\ufffd", text)


def typed_length(text: str) -> int:
    """Characters as a browser's textarea counts them for its maxlength: a line break one,
    though the form posts it as CRLF (limits on typed text count this way, so that text typed
    up to a textarea's maxlength is never refused)."""
    return len(text.replace("\r\n", "\n"))


def line_breaks_as_in(text: str, original: str) -> str:
    """``text`` with the line breaks of ``original`` (CRLF where it has any, else LF): a
    browser posts a textarea's lines joined by CRLF whatever the response it started from
    used, and a (rewrite ≻ original) row whose two sides differ in line endings teaches a
    reward model to prefer CRLF."""
    text = text.replace("\r\n", "\n")
    return text.replace("\n", "\r\n") if "\r\n" in original else text


def unchanged_copy(text: str, original: str) -> bool:
    """Whether ``text`` is ``original`` as it was, line endings and surrounding whitespace
    aside (a response copied into the rewrite box and sent unedited)."""
    return text.replace("\r\n", "\n").strip() == original.replace("\r\n", "\n").strip()


@functools.cache
def combining_marks_class(*, astral: bool) -> str:
    """The body of a regular-expression character class of the combining marks (Unicode
    category M: accents, vowel signs, viramas, variation selectors), as ranges: what belongs
    to the character before it on screen. ``astral``: those past U+FFFF too (planes 1 and 14;
    a class reaching there costs ``re`` about twice the time a match, so text searches that
    only need living scripts leave them out). Built on first use (a tenth of a second)."""
    planes = (*range(0x20000), *range(0xE0000, 0xE1000)) if astral else range(0x10000)
    spans: list[list[int]] = []
    for code in planes:
        if unicodedata.category(chr(code))[0] != "M":
            continue
        if spans and spans[-1][1] == code - 1:
            spans[-1][1] = code
        else:
            spans.append([code, code])
    return "".join(
        re.escape(chr(first)) + ("" if first == last else "-" + re.escape(chr(last)))
        for first, last in spans
    )
