"""Dashboard pages; config/urls.py includes them at the site root."""

from __future__ import annotations

urlpatterns: list = []
