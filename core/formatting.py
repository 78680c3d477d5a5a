"""Numbers as pages show them to people."""

from __future__ import annotations


def whole_percent(share: float) -> int:
    """``share`` (0 to 1) in whole percent, rounded, but 100 only when it is all and 0 only
    when it is none: 199 pairs of 200 complete, or a job at 0.996, read 99 %, not a
    finished-looking 100 % (``widthratio`` rounds them up)."""
    percent = round(share * 100)
    if share < 1:
        percent = min(percent, 99)
    if share > 0:
        percent = max(percent, 1)
    return percent
