"""Review 19p of the model path's memory: a campaign's retrieval index rebuilt once it has
outgrown its lists is built after the old index is let go, not beside it (at 10M pairs an
8-bit IVF index is ~3.9 GB: holding both doubled the prioritising worker's peak); head-mode
training holds one chosen and one rejected copy of the features, not two pairs of them, and
does not decode the context vectors it never uses."""

from __future__ import annotations

import contextlib
import gc
import tracemalloc
import weakref

import numpy as np
import pytest

from annotation.models import Pair
from scoring.loop import training, vector_index
from scoring.loop.judged_pairs import JudgedPairs, training_pairs
from scoring.loop.retrieval import normalise_rows
from scoring.loop.training import train_in_process
from scoring.loop.vector_index import campaign_index
from scoring.loop.vector_store import vector_store
from tests.factories import CampaignFactory, PairFactory
from tests.scoring.loop_support import tiny_base_dir

KEY = "review19p-encoder"
DIM = 8
CAMPAIGN = 7


@pytest.fixture(autouse=True)
def _fresh_cache():
    vector_index._CACHE.clear()
    yield
    vector_index._CACHE.clear()


def _append(rng: np.random.Generator, first_id: int, n: int) -> None:
    vector_store(KEY).append(
        ids=np.arange(first_id, first_id + n, dtype=np.int64),
        blocks={
            "context": normalise_rows(rng.normal(size=(n, DIM))),
            "a": rng.normal(size=(n, 4)),
            "b": rng.normal(size=(n, 4)),
        },
        campaign_id=CAMPAIGN,
    )


def _everyone(ids: np.ndarray) -> np.ndarray:
    return ids


def test_it_lets_go_of_the_outgrown_index_before_building_its_replacement(
    settings, tmp_path, monkeypatch
):
    settings.ARBITER = {**settings.ARBITER, "VECTOR_ROOT": str(tmp_path), "INDEX_EXACT_MAX": 500}
    rng = np.random.default_rng(0)
    _append(rng, 1, 400)
    first = campaign_index(key=KEY, campaign_id=CAMPAIGN, members=_everyone)
    assert first.meta["kind"] == "exact"
    old = weakref.ref(first)
    del first

    alive_while_building: list[bool] = []
    train = vector_index._train_streaming

    def watching(*args, **kwargs):
        gc.collect()
        alive_while_building.append(old() is not None)
        return train(*args, **kwargs)

    monkeypatch.setattr(vector_index, "_train_streaming", watching)
    _append(rng, 401, 400)  # 800 vectors: past the exact threshold, so rebuilt as IVF
    rebuilt = campaign_index(key=KEY, campaign_id=CAMPAIGN, members=_everyone)

    assert rebuilt.meta["kind"] == "ivf"
    assert rebuilt.size == 800
    assert alive_while_building == [False]


# --- Head-mode training holds one copy of the pairs' features ------------------------------


class _Context:
    """What ``train_in_process`` asks of a job context, without a job."""

    @contextlib.contextmanager
    def stage(self, start: float, end: float, message: str):
        yield

    def on_progress(self, fraction: float, message: str) -> None:
        pass

    def log(self, message: str) -> None:
        pass

    def check(self) -> None:
        pass

    def should_stop(self) -> bool:
        return False


class _Stop(Exception):
    pass


@pytest.mark.django_db
def test_head_training_holds_one_chosen_and_one_rejected_copy_of_the_features(
    settings, tmp_path, monkeypatch
):
    """While the head is fitted, the job holds the features it passes (chosen, rejected) and
    no second pair of (pairs × width) arrays: at 384 dimensions that pair is 3 KB a training
    pair (30 GB at 10M); nor are the context vectors decoded (1.5 KB a pair more)."""
    import scoring.reward_model
    from scoring.reward_model import TrainingConfig

    settings.ARBITER = {**settings.ARBITER, "VECTOR_ROOT": str(tmp_path)}
    campaign = CampaignFactory()
    for index in range(67):  # 67 rows: a size no other allocation here shares by chance
        PairFactory(
            campaign=campaign,
            status=Pair.Status.COMPLETE,
            provenance=Pair.Provenance.UNANIMOUS,
            consensus_preference=1 if index % 3 else -1,
        )
    data = training_pairs(campaign=campaign)
    seen: dict[str, object] = {}

    def fake_train(model, examples, config, *, embeddings, **kwargs):
        block = embeddings.chosen.nbytes
        traces = tracemalloc.take_snapshot().traces
        seen["blocks"] = sum(1 for trace in traces if trace.size == block)
        seen["embeddings"] = embeddings
        raise _Stop

    monkeypatch.setattr(scoring.reward_model, "train", fake_train)
    loads: list[tuple[str, bool]] = []
    load = training.pair_vectors_load

    def watched_load(*, pair_ids, key, context=True):
        loads.append((key, context))
        return load(pair_ids=pair_ids, key=key, context=context)

    monkeypatch.setattr(training, "pair_vectors_load", watched_load)
    tracemalloc.start()
    try:
        with pytest.raises(_Stop):
            train_in_process(
                base=tiny_base_dir(),
                data=data,
                heldout=JudgedPairs([], []),
                config=TrainingConfig(mode="head"),
                params={},
                context=_Context(),
            )
    finally:
        tracemalloc.stop()

    embeddings = seen["embeddings"]
    assert embeddings.chosen.shape[0] == 67
    assert seen["blocks"] == 2  # chosen and rejected, no second pair beside them
    [(key, with_context)] = loads
    assert with_context is False  # the head's features only, not the context vectors
    # Each pair's chosen side is still its preferred response's features.
    stored = load(pair_ids=data.pair_ids, key=key, context=False)
    a_chosen = (np.array(data.preferences) > 0)[:, None]
    np.testing.assert_array_equal(embeddings.chosen, np.where(a_chosen, stored.a, stored.b))
    np.testing.assert_array_equal(embeddings.rejected, np.where(a_chosen, stored.b, stored.a))
