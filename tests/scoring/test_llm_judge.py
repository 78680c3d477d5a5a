"""Stage 2 curation with an LLM judge, against a fake OpenAI-compatible server."""

from __future__ import annotations

import numpy as np
import pytest

from annotation.models import Pair
from scoring.datasets.curation import pool_curate
from scoring.datasets.llm_judge import llm_judge_scorer
from tests.annotation.tools_helpers import local_json_server
from tests.factories import PairFactory

pytestmark = pytest.mark.django_db


def answer(text: str):
    return 200, {"choices": [{"message": {"role": "assistant", "content": text}}]}


def judge_that_knows(request):
    """Prefers whichever response says 'right', wherever it is shown."""
    prompt = request.body["messages"][-1]["content"]
    shown_a = prompt.split("## Response A\n", 1)[1].split("## Response B\n", 1)[0]
    return answer("A" if "right" in shown_a else "B")


@pytest.fixture
def configure(settings):
    def use(server):
        settings.ARBITER = {**settings.ARBITER, "LLM_URL": f"{server.url}/v1", "LLM_MODEL": "j"}

    return use


def constant(p: float):
    return lambda items: np.full(len(items), p)


def test_the_judge_keeps_pairs_both_models_reject_when_it_agrees(campaign, configure):
    agrees = PairFactory(campaign=campaign, silver_preference=1, status=Pair.Status.POOLED,
                         response_a="the right answer", response_b="a wrong answer")
    disagrees = PairFactory(campaign=campaign, silver_preference=1, status=Pair.Status.POOLED,
                            response_a="a wrong answer", response_b="the right answer")
    with local_json_server(judge_that_knows) as server:
        configure(server)
        result = pool_curate(campaign=campaign, gold=constant(0.1), best=constant(0.1),
                             judge=llm_judge_scorer())
        # Each pair is asked twice, A and B swapped the second time.
        assert len(server.requests) == 4
    assert Pair.objects.get(pk=agrees.pk).curation == "kept"
    assert Pair.objects.get(pk=disagrees.pk).curation == "discarded"
    assert result.kept == 1 and result.kept_by_judge == 1


def test_the_judge_is_not_asked_about_pairs_the_models_keep(campaign, configure):
    kept_by_models = PairFactory(campaign=campaign, silver_preference=1,
                                 status=Pair.Status.POOLED, response_a="the right answer")
    doubted = PairFactory(campaign=campaign, silver_preference=-1, status=Pair.Status.POOLED,
                          response_a="a wrong answer", response_b="the right answer")
    with local_json_server(judge_that_knows) as server:
        configure(server)
        # p(A better) = 0.9: agrees with the first silver label (A), contradicts the second.
        result = pool_curate(campaign=campaign, gold=constant(0.9), best=constant(0.9),
                             judge=llm_judge_scorer())
        assert len(server.requests) == 2  # the doubted pair, both ways round
    assert Pair.objects.get(pk=kept_by_models.pk).curation == "kept"
    assert Pair.objects.get(pk=doubted.pk).curation == "kept"
    assert result.kept == 2 and result.kept_by_judge == 1


def test_a_judge_that_always_says_a_decides_nothing(campaign, configure):
    pair = PairFactory(campaign=campaign, silver_preference=1, status=Pair.Status.POOLED)
    with local_json_server(lambda request: answer("A. Definitely A.")) as server:
        configure(server)
        p = llm_judge_scorer()(
            [type("Item", (), {"conversation": pair.conversation, "response_a": "x",
                               "response_b": "y"})()]
        )
    assert p.tolist() == [0.5]
