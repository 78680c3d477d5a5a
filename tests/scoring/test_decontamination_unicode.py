"""Review 15: decontamination and deduplication find the same text in another Unicode form
(precomposed NFC or decomposed NFD accents, compatibility forms)."""

from __future__ import annotations

import json
import unicodedata

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from scoring.datasets.curation.decontamination import EvaluationIndex, normalised_words
from scoring.datasets.curation.near_duplicates import (
    EXACT,
    NEAR,
    DuplicateFinder,
    dedupe_key,
    minhash_similarity,
)
from scoring.datasets.export import ExportFilters, export_write
from tests.conftest import api_client_for
from tests.factories import PairFactory
from tests.scoring.test_export import voted_pair

# 19 tokens: a 13-gram prompt, with accents on "à", "élève", "troisième", "paraît", "été"...
PROMPT = (
    "Expliquez à un élève de troisième pourquoi le ciel paraît bleu en été et rougeâtre "
    "à la tombée de la nuit, s'il vous plaît"
)
NFC = unicodedata.normalize("NFC", PROMPT)
NFD = unicodedata.normalize("NFD", PROMPT)
ANSWER = "La diffusion de Rayleigh disperse davantage les longueurs d'onde courtes en été"


def test_nfd_text_gives_the_tokens_of_its_nfc_form():
    assert NFC != NFD
    assert normalised_words(NFD) == normalised_words(NFC)
    assert normalised_words(NFD)[:5] == ["expliquez", "à", "un", "élève", "de"]
    # Compatibility forms fold too: full-width letters and the "ﬁ" ligature.
    assert normalised_words("ＧＰＴ ﬁnal") == ["gpt", "final"]


@pytest.mark.parametrize("words", [19, 10, 5])  # an n-gram prompt, a contained one, a whole turn
def test_an_evaluation_prompt_in_one_form_contaminates_a_turn_in_the_other(words):
    prompt = " ".join(NFC.split()[:words])
    index = EvaluationIndex()
    index.add(prompt)
    assert index.contaminates([unicodedata.normalize("NFD", prompt)])
    decomposed = EvaluationIndex()
    decomposed.add(unicodedata.normalize("NFD", prompt))
    assert decomposed.contaminates([prompt])


def test_the_exact_key_and_minhash_ignore_the_unicode_form():
    conversation = [{"role": "user", "content": NFC}]
    decomposed = [{"role": "user", "content": NFD}]
    answer_nfd = unicodedata.normalize("NFD", ANSWER)
    assert dedupe_key(decomposed, "non", answer_nfd) == dedupe_key(conversation, ANSWER, "non")
    finder = DuplicateFinder(threshold=None)
    assert finder.check(conversation, ANSWER, "non") is None
    assert finder.check(decomposed, "non", answer_nfd) == EXACT
    # Near duplicates compare the same shingles: identical once normalised.
    assert minhash_similarity((conversation, ANSWER, "non"), (decomposed, answer_nfd, "non")) == (
        1.0,
        1.0,
    )
    near = DuplicateFinder(threshold=0.8)
    assert near.check(conversation, ANSWER, "non") is None
    assert near.check(decomposed, answer_nfd + " !", "non") == NEAR


@pytest.fixture
def annotators(annotator_a, annotator_b, annotator_c):
    return [annotator_a, annotator_b, annotator_c]


def _export(campaign, tmp_path):
    path = tmp_path / "out.jsonl"
    result = export_write(
        campaign=campaign, filters=ExportFilters(), file_format="jsonl", destination=path
    )
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [row["external_id"] for row in rows], result.manifest


@pytest.mark.django_db
def test_the_export_leaves_out_an_nfd_copy_of_an_uploaded_nfc_evaluation_prompt(
    admin_user, campaign, annotators, tmp_path, sent_tasks
):
    bench = json.dumps({"prompt": NFC, "chosen": "Rayleigh.", "rejected": "Magic."}) + "\n"
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/evaluation-sets",
        {"file": SimpleUploadedFile("bench.jsonl", bench.encode()), "name": "bench"},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    for external_id, prompt in (("nfd", NFD + " "), ("clean", "Why is the sky blue?")):
        voted_pair(
            campaign,
            annotators,
            [1, 1, 1],
            consensus=1,
            provenance="unanimous",
            external_id=external_id,
            conversation=[{"role": "user", "content": prompt}],
        )
    written, manifest = _export(campaign, tmp_path)
    assert written == ["clean"]
    assert manifest["decontamination"]["evaluation_prompts"] == 1
    assert manifest["decontamination"]["dropped"] == 1


@pytest.mark.django_db
def test_the_export_writes_one_of_two_stored_pairs_differing_only_in_unicode_form(
    campaign, annotators, tmp_path
):
    # Pairs imported before the content hash ignored the Unicode form have hashes of their
    # raw text, so both forms may be stored in one campaign.
    for external_id, form in (("nfc", "NFC"), ("nfd", "NFD")):
        voted_pair(
            campaign,
            annotators,
            [1, 1, 1],
            consensus=1,
            provenance="unanimous",
            external_id=external_id,
            conversation=[{"role": "user", "content": unicodedata.normalize(form, PROMPT)}],
            response_a=unicodedata.normalize(form, ANSWER),
            response_b="non",
            content_hash=form.lower() * 16,
        )
    written, manifest = _export(campaign, tmp_path)
    assert written == ["nfc"]
    assert (manifest["deduplication"]["exact"], manifest["deduplication"]["near"]) == (1, 0)


@pytest.mark.django_db
def test_a_gold_pair_in_nfd_is_decontaminated_as_well(campaign, tmp_path, sent_tasks, admin_user):
    bench = json.dumps({"prompt": NFC, "chosen": "Rayleigh.", "rejected": "Magic."}) + "\n"
    api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/evaluation-sets",
        {"file": SimpleUploadedFile("bench.jsonl", bench.encode()), "name": "bench"},
        format="multipart",
    )
    PairFactory(
        campaign=campaign,
        external_id="gold",
        is_gold=True,
        gold_preference=1,
        consensus_preference=1,
        status="complete",
        provenance="gold",
        conversation=[{"role": "user", "content": f"Please: {NFD}"}],
    )
    written, manifest = _export(campaign, tmp_path)
    assert written == []
    assert manifest["decontamination"]["by_provenance"] == {"gold": 1}
