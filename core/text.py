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
