"""Migration 0003 moves PairEmbedding rows into vector part files and drops the table."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("scoring", "0002_job_shards"), ("annotation", "0009_campaign_activation_tolerance")]
AFTER = [("scoring", "0003_pair_vectors_to_files")]


@pytest.mark.django_db(transaction=True)
def test_embedding_rows_move_to_part_files_and_the_table_goes():
    from scoring.loop.vector_store import VectorStore

    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    campaign = apps.get_model("annotation", "Campaign").objects.create(name="migrated")
    pair_model = apps.get_model("annotation", "Pair")
    pairs = [
        pair_model.objects.create(
            campaign=campaign, conversation=[], response_a="a", response_b="b",
            content_hash=f"{i:064x}",
        )
        for i in range(3)
    ]
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, 3, 4)).astype("<f4")
    embedding = apps.get_model("scoring", "PairEmbedding")
    for pair, vector in zip(pairs, vectors, strict=True):
        embedding.objects.create(pair=pair, encoder="old-encoder", dim=4, vector=vector.tobytes())

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    assert "scoring_pairembedding" not in connection.introspection.table_names()
    store = VectorStore("old-encoder")
    loaded = store.load([pair.pk for pair in pairs])
    np.testing.assert_allclose(loaded["a"], vectors[:, 1], atol=5e-3)
    np.testing.assert_allclose(loaded["b"], vectors[:, 2], atol=5e-3)
    scale = np.abs(vectors[:, 0]).max(axis=1, keepdims=True)
    assert np.all(np.abs(loaded["context"] - vectors[:, 0]) <= scale / 254 + 1e-6)

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
