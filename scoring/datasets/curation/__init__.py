"""Stage 2 automatic curation of the unverified ("silver") pool, as in Skywork-Reward-V2.

The pool: pairs of a campaign that carry a source chosen/rejected label
(``Pair.silver_preference`` non-zero), no human label, no consensus and are not gold.

1. Decontamination: a pair whose conversation shares a token 13-gram (NFKC, lowercase,
   punctuation dropped, n-grams never crossing a turn; ``decontamination.normalised_words``)
   with a prompt of the campaign's evaluation sets (``EvaluationPrompt``, ``EvaluationItem``)
   is dropped (``curation="contaminated"``). Evaluation prompts shorter than 13 tokens have no
   13-gram: one of 8 to 12 tokens contaminates a turn that holds it anywhere, a shorter one
   only a turn that is the same token sequence.
2. Deduplication on (conversation, chosen, rejected): ``content_hash`` already makes pairs
   unique within a campaign in one orientation; here the key ignores the A/B order, and a
   silver pair is dropped (``curation="duplicate"``) when an earlier silver pair or a
   human-verified pair (labelled, gold or with a consensus) of the campaign has the same key,
   or, with ``near_duplicate_threshold``, nearly the same text (MinHash, ``near_duplicates``;
   off by default here: a few hundred pairs a second is slow for a pool of millions).
   The human label wins.
3. Consistency filter: the gold model and the best model each give p(A better). The gold
   model is trained by the curation job itself on human-verified pairs only (``gold_sources``:
   gold, adjudicated and unanimous pairs by default; majority on request; never silver) and
   registered as a version of kind ``gold`` that never serves; or it is a version the admin
   names. The best model is the loop version with the highest mean accuracy over the
   campaign's evaluation sets, or, when no version is evaluated on them all, the highest
   held-out gold accuracy; the job's result says which of each it used and why.
   ``agree = p`` when the source label prefers A, else ``1 - p``. A pair is ``kept`` when
   both agree above ``keep_threshold`` (0.5 by default), or when a judge is configured and
   agrees above ``judge_threshold``. The rest are
   ``discarded``; with ``recycle`` on, a discarded pair both models confidently reverse
   (``1 - agree >= recycle_threshold`` for each, 0.9 by default) is ``recycled``: exports flip
   its chosen and rejected and mark it (``source_label_flipped``). The source label itself is
   never changed.

Scorers are plain callables (items → p(A better) per item), so the rules can be tested with
known answers; ``model_version_scorer`` builds one from a registered model version, reusing
the version's stored ``PairScore`` rows and scoring only the rest. When an OpenAI-compatible
model is configured (ARBITER_LLM_URL, ARBITER_LLM_MODEL), curation jobs use it as the judge
(`scoring.datasets.llm_judge`; job parameter ``llm_judge: false`` turns it off).

The package: ``decontamination``, ``evaluation_sets``, ``consistency`` (rules, verdicts and the
models that give them), ``pool`` (deduplication and one pass over the pool), ``jobs``. Its
public names are re-exported here.
"""

from __future__ import annotations

from scoring.datasets.curation.consistency import (
    CONTAMINATED,
    DEFAULT_BATCH_SIZE,
    DISCARDED,
    DUPLICATE,
    KEPT,
    RECYCLED,
    CurationError,
    CurationParams,
    CurationRules,
    ModelChoice,
    ProgressCallback,
    best_model_choice,
    curation_models,
    curation_verdicts,
    gold_model_choice,
    model_version_scorer,
)
from scoring.datasets.curation.decontamination import (
    NGRAM,
    EvaluationIndex,
    evaluation_index,
    normalised_words,
    word_ngrams,
)
from scoring.datasets.curation.evaluation_sets import (
    MAX_EVALUATION_SET_BYTES,
    evaluation_prompts_from_file,
    evaluation_prompts_read,
    evaluation_set_upload,
    pa_errors,
)
from scoring.datasets.curation.jobs import (
    curation_create,
    curation_run,
)
from scoring.datasets.curation.near_duplicates import DuplicateFinder, dedupe_key
from scoring.datasets.curation.pool import (
    CurationResult,
    curation_pool,
    pool_curate,
)

__all__ = [
    "CONTAMINATED",
    "CurationError",
    "CurationParams",
    "CurationResult",
    "CurationRules",
    "DEFAULT_BATCH_SIZE",
    "DISCARDED",
    "DUPLICATE",
    "DuplicateFinder",
    "EvaluationIndex",
    "KEPT",
    "MAX_EVALUATION_SET_BYTES",
    "ModelChoice",
    "NGRAM",
    "ProgressCallback",
    "RECYCLED",
    "best_model_choice",
    "curation_create",
    "curation_models",
    "curation_pool",
    "curation_run",
    "curation_verdicts",
    "dedupe_key",
    "evaluation_index",
    "evaluation_prompts_from_file",
    "evaluation_prompts_read",
    "evaluation_set_upload",
    "gold_model_choice",
    "model_version_scorer",
    "normalised_words",
    "pa_errors",
    "pool_curate",
    "word_ngrams",
]
