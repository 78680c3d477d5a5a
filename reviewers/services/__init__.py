"""Writes for the reviewers app: consensus, escalations, adjudication, quality control."""
