"""Curated export: verified (and optionally silver) pairs as a reward-model training set.

Rows follow the Hugging Face preference format of Skywork-Reward-Preference-80K: ``chosen`` and
``rejected`` are message lists (the conversation plus the final assistant turn), followed by
provenance columns (see ``MAIN_SCHEMA``). Pairs without a chosen side (ties, and unresolved or
discarded pairs when asked for) are left out or written to a separate file whose rows carry
``response_a``/``response_b`` instead (``UNRANKED_SCHEMA``). Pairs whose consensus is "both bad"
or "both good" (``Pair.consensus_outcome``) are never a chosen/rejected pair: they go to their
own file, ``x.outcomes.jsonl`` (``outcomes="separate"``, the default; written only when there is
one), or are left out (``outcomes="exclude"``), and the manifest counts them either way. With
``rewrites``, each human rewrite of a pair the export selects adds a (rewrite ≻ original) row to
the main file, provenance ``rewrite``: a chosen/rejected pair of its own, written whether the
pair's own row goes to the main, ties or outcomes file or nowhere (a "both bad" pair's rewrite
is what the rewrite step is for). Of an annotator's rewrites only their label's latest counts,
and none of a set-aside label. Per-aspect ratings of the labels are summarised in ``aspects``.
The main and ties files import back into a campaign (``annotation.importers``: chosen/rejected
message lists, and A/B message lists whose ``preference`` is the source label, so a tie stays a
tie and an unresolved pair comes without one); the importer refuses an outcomes file, naming it,
since a source label cannot say "both bad" (tests/scoring/test_export_reimport.py).

What is exported (``ExportFilters``):

* Gold pairs (``Pair.is_gold``: imported as verified, or promoted by an expert) are verified and
  exported by default, with their gold preference.
* Human consensus: provenance ``unanimous``/``majority`` (while no escalation is open) and
  ``adjudicated``; ``discarded`` and ``unresolved`` only when asked.
* ``rounds`` and ``min_agreement`` narrow the human-labelled pairs only; gold and silver pairs
  belong to no round and were not voted on. ``min_agreement`` compares with
  ``agreement = 1 - Pair.disagreement`` (the scaled mean squared difference of the votes, see
  reviewers.consensus.pair_disagreement) and applies to unanimous/majority pairs: an expert
  decided adjudicated ones, whatever the votes said.
* Silver (``include_silver``): unverified pairs with a source label and no human label yet,
  Stage-2 ``kept`` and ``recycled`` pairs (a recycled pair's label is the flip of its source
  label), and, unless ``silver_curated_only``, pairs not curated yet. Pairs curation marked
  ``discarded``, ``duplicate`` or ``contaminated`` never are.

Every export streams pairs in two passes, the verified pairs (gold, voted, decided) and then
the silver ones, each in primary-key order (so a verified pair, not its silver repeat, is the
one deduplication keeps), a chunk at a time, with the chunk's labels,
adjudications, scores and evidence fetched by pair-id range in a handful of queries, so memory
stays bounded whatever the campaign's size; outside a transaction a reader thread fetches the
next chunk while this one is formatted. Each chunk reads committed data: a pair that changes
while the export runs appears at most once, before or after the change (a silver pair that
humans settle between the two passes, in neither), and the manifest records
the highest pair id read. Files are written under a hidden temporary name and renamed only when
complete, so an interrupted export leaves no visible file. benchmarks/export.py measures a
million pairs.

The package: ``filters`` (what is exported), ``schema`` (the Arrow schemas), ``reading`` (the
chunked reads and the read-ahead), ``row_parts`` (one row's columns), ``rows`` (the rows of a
whole export and their counts), ``writers`` (files and manifests), ``snapshots`` (export jobs).
Its public names are re-exported here.
"""

from __future__ import annotations

from scoring.datasets.export.filters import (
    DEFAULT_PROVENANCE,
    FORMATS,
    PROVENANCE_CHOICES,
    SILVER_CURATIONS,
    TIES_CHOICES,
    ExportFilters,
    InvalidExport,
    export_condition,
    export_queryset,
)
from scoring.datasets.export.rows import ExportCounts, export_rows
from scoring.datasets.export.schema import (
    ATTRIBUTE_NAMES,
    MAIN_SCHEMA,
    UNRANKED_SCHEMA,
    schema_description,
)
from scoring.datasets.export.snapshots import (
    export_create,
    export_directory,
    export_file,
    export_run,
)
from scoring.datasets.export.writers import (
    ExportResult,
    code_version,
    export_write,
    file_sha256,
    outcomes_path,
    unranked_path,
)

__all__ = [
    "ATTRIBUTE_NAMES",
    "DEFAULT_PROVENANCE",
    "ExportCounts",
    "ExportFilters",
    "ExportResult",
    "FORMATS",
    "InvalidExport",
    "MAIN_SCHEMA",
    "PROVENANCE_CHOICES",
    "SILVER_CURATIONS",
    "TIES_CHOICES",
    "UNRANKED_SCHEMA",
    "code_version",
    "export_condition",
    "export_create",
    "export_directory",
    "export_file",
    "export_queryset",
    "export_rows",
    "export_run",
    "export_write",
    "file_sha256",
    "outcomes_path",
    "schema_description",
    "unranked_path",
]
