"""Checks on text that every layer may use, the importers included (no Django here)."""

from __future__ import annotations


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
