"""`.env.example` lists every variable the settings module reads (STYLE §8, README "config/")."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_variable_the_settings_read_is_listed_in_env_example():
    settings_source = (ROOT / "config" / "settings.py").read_text()
    read = set(re.findall(r'\benv\w*\(\s*"([A-Z][A-Z0-9_]+)"', settings_source))
    read |= set(re.findall(r'os\.environ(?:\.get)?[\[(]\s*"([A-Z][A-Z0-9_]+)"', settings_source))
    listed = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE)
    )
    assert "SECRET_KEY" in read  # the pattern finds what the settings read
    assert sorted(read - listed) == []
