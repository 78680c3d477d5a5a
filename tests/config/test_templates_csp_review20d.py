"""No template of ours writes what the content security policy (script-src and style-src
'self') makes the browser drop: an inline <script> or <style>, a style attribute, or an
on… event-handler attribute. The browser tests find such a violation only on the pages
they open, with the data they set up; this reads every template."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

# Django comments may name what they explain ("no inline <style>") without writing it.
COMMENTS = re.compile(r"{%\s*comment\s*%}.*?{%\s*endcomment\s*%}|{#.*?#}", re.DOTALL)
BLOCKED = {
    "inline <script>": re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", re.I),
    "<style> element": re.compile(r"<style[\s>]", re.I),
    "style attribute": re.compile(r"<[a-z][^>]*\sstyle\s*=", re.I),
    "event-handler attribute": re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I),
}


def test_no_template_writes_what_the_csp_blocks():
    found = []
    for path in sorted((Path(settings.BASE_DIR) / "templates").rglob("*.html")):
        # A comment becomes its line breaks, so that the lines named stay the file's.
        text = COMMENTS.sub(
            lambda comment: "\n" * comment.group().count("\n"), path.read_text(encoding="utf-8")
        )
        for what, pattern in BLOCKED.items():
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{path.relative_to(settings.BASE_DIR)}:{line}: {what}")
    assert found == []
