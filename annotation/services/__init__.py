"""Writes for the annotation app, one module per entity (see STYLE.md §1)."""
