"""What the annotator tools keep: sandboxed code runs and the fact corpora searched."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.models.labels import Assignment

# Runs still waiting for a sandbox or running in one. Finished runs are kept for ever; the stale
# sweep and the pending-runs cap filter with this very condition, so that they read only the
# partial index below (usually empty), not the table or the user's whole history.
CODE_RUN_UNFINISHED = Q(status__in=["queued", "running"])


class CodeRun(models.Model):
    """A sandboxed code run requested by a user; a Celery worker fills the result."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    assignment = models.ForeignKey(
        Assignment, null=True, blank=True, on_delete=models.SET_NULL, related_name="code_runs"
    )
    language = models.CharField(max_length=20)
    code = models.TextField()
    stdin = models.TextField(blank=True)
    tests = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    result = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["user", "created_at"],
                condition=CODE_RUN_UNFINISHED,
                name="coderun_unfinished",
            ),
        ]

    def __str__(self) -> str:
        return f"code run {self.pk}"


class Corpus(models.Model):
    """A fact corpus searched by annotators."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "corpora"

    def __str__(self) -> str:
        return self.name


class Document(models.Model):
    corpus = models.ForeignKey(Corpus, on_delete=models.CASCADE, related_name="documents")
    title = models.CharField(max_length=500)
    body = models.TextField()
    source = models.CharField(max_length=1000, blank=True, help_text="URL or citation.")
    attribution = models.CharField(max_length=500, blank=True, help_text="Licence / credit.")

    def __str__(self) -> str:
        return self.title
