"""Review 19b: decontamination's tokens are words in every script. A combining mark (a
Devanagari vowel sign or virama, an Arabic vowel mark) is no word character to Python's ``re``,
so a Hindi word broke into pieces at each mark: a 13-gram then spanned four or five words and a
two-word phrase counted as a five-token prompt. Thai, Lao, Myanmar and Khmer, written without
spaces like CJK, are a token a character, as CJK is. A soft hyphen inside a word splits it no
more."""

from __future__ import annotations

from scoring.datasets.curation.decontamination import EvaluationIndex, normalised_words
from scoring.datasets.curation.near_duplicates import text_shingles

HINDI = "नमस्ते दुनिया"  # "hello world": two words, each with vowel signs and a virama


def test_a_word_with_combining_marks_is_one_token():
    assert normalised_words(HINDI) == ["नमस्ते", "दुनिया"]
    # Arabic with its vowel marks: one word.
    assert normalised_words("العَرَبِيَّة") == ["العَرَبِيَّة"]
    assert normalised_words("co\u00adoperate") == normalised_words("cooperate") == ["cooperate"]


def test_thai_is_a_token_a_character_with_its_marks():
    # "สวัสดี": ส ว ั ส ด ี; the vowel marks stay with the letter before them.
    assert normalised_words("สวัสดี") == ["ส", "วั", "ส", "ดี"]
    assert normalised_words("abc สวัสดี 12") == ["abc", "ส", "วั", "ส", "ดี", "12"]


def test_a_short_hindi_phrase_contaminates_only_a_whole_turn():
    # Five words: under CONTAINED_MIN tokens, so only a turn that is the phrase matches; its
    # pieces made it 13 tokens, a 13-gram found inside any turn quoting it.
    prompt = "मुझे एक चुटकुला सुनाइए कृपया"
    index = EvaluationIndex()
    index.add(prompt)
    assert index.contaminates([prompt])
    assert not index.contaminates([f"मेरे दोस्त ने कहा: {prompt} और फिर वह हँस पड़ा"])


def test_near_duplicate_shingles_are_whole_words():
    assert text_shingles([HINDI]) == {"नमस्ते दुनिया".encode()}
