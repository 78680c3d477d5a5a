"""Evaluation sets in the RewardBench layout: upload, per-version accuracy with intervals."""
