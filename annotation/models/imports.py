"""An import of pairs from an uploaded file, run as a job."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from annotation.models.campaigns import Campaign


class ImportJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="imports")
    file = models.CharField(
        max_length=500,
        help_text="Path of the file on disk; an upload is removed once the import has finished.",
    )
    original_name = models.CharField(max_length=300)
    # What stays of an upload once its import has finished (the file itself is removed).
    file_bytes = models.BigIntegerField(null=True, blank=True)
    file_sha256 = models.CharField(max_length=64, blank=True)
    as_gold = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    rows_read = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    duplicate_count = models.PositiveIntegerField(default=0)
    # A gold import's rows that made pairs already in the campaign gold. db_default (both):
    # the previous release's code, still serving during an upgrade, leaves them out.
    made_gold_count = models.PositiveIntegerField(default=0, db_default=0)
    # A gold import's rows naming a pair being judged right now: left as it was, not gold.
    busy_gold_count = models.PositiveIntegerField(default=0, db_default=0)
    error_line = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"import {self.pk} ({self.status})"
