"""Move ``PairEmbedding`` rows into the vector part files, then drop the table.

Rows are read in chunks of 2,048 ordered by (encoder, pair) and written as one part file per
chunk per encoder (``scoring.loop.vector_store``), so the migration runs in bounded memory.
Going back recreates an empty table (the vectors stay in the files; they are a cache that
the next job would recompute anyway).
"""

from __future__ import annotations

import numpy as np
from django.db import migrations

_CHUNK = 2048


def _flush(store, ids, vectors, dim) -> None:
    if not ids:
        return
    stacked = np.stack(vectors).reshape(len(ids), 3, dim)
    store.append(
        ids=np.array(ids, dtype=np.int64),
        blocks={"context": stacked[:, 0], "a": stacked[:, 1], "b": stacked[:, 2]},
    )


def move_to_files(apps, schema_editor) -> None:
    from scoring.loop.vector_store import VectorStore

    PairEmbedding = apps.get_model("scoring", "PairEmbedding")
    rows = (
        PairEmbedding.objects.order_by("encoder", "pair_id")
        .values_list("encoder", "pair_id", "dim", "vector")
        .iterator(chunk_size=_CHUNK)
    )
    store, ids, vectors, dim = None, [], [], 0
    for encoder, pair_id, width, vector in rows:
        if store is None or store.key != encoder or width != dim or len(ids) >= _CHUNK:
            if store is not None:
                _flush(store, ids, vectors, dim)
            if store is None or store.key != encoder:
                store = VectorStore(encoder)
            ids, vectors, dim = [], [], width
        ids.append(pair_id)
        vectors.append(np.frombuffer(bytes(vector), dtype="<f4"))
    if store is not None:
        _flush(store, ids, vectors, dim)


class Migration(migrations.Migration):
    dependencies = [("scoring", "0002_job_shards")]

    operations = [
        migrations.RunPython(move_to_files, migrations.RunPython.noop, elidable=True),
        migrations.DeleteModel(name="PairEmbedding"),
    ]
