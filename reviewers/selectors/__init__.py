"""Reads for the reviewers app, one module per page or concern.

Modules: ``access`` (who may see what: experts, admins, campaign members), ``queue`` (the
expert queue, claims, the rewrite queue), ``review`` (the review page of an escalation),
``quality`` (re-tests, annotator quality, the agreement report).
"""
