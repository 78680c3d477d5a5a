"""The job runner: job rows, claims with heartbeats, cancellation and logs.

Exports, curation and the model loop all run as jobs through ``scoring.jobs.runner``.
"""
