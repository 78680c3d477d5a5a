"""Named hooks of the reviewers layer (see ``annotation.hooks``): what reviewers asks of the
layer above it (scoring) without importing it."""

from __future__ import annotations

from annotation.hooks import Hook

# The active model version's latest score of ``pair``, as a dict (version, p_a_better,
# reward_a, reward_b), or None: shown on the expert review page.
model_prediction = Hook("model_prediction")
