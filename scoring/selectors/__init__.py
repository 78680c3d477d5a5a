"""Reads for the scoring app, one module per subject (agreement, …)."""
