"""Turning a conversation plus a candidate response into token ids.

A reward model scores the whole transcript, so the text it sees is the conversation followed by
the response as the final assistant turn:

* When the tokenizer ships a chat template (Skywork-Reward-V2, Qwen, Llama), the template is
  applied to ``conversation + [{"role": "assistant", "content": response}]`` and the rendered text
  is tokenized without adding special tokens again (the template already holds them), which is
  what ``apply_chat_template(..., tokenize=True)`` does.
* Otherwise (encoders such as MiniLM/BERT) the turns are joined one per line as
  ``"{role}: {content}"``, and the tokenizer adds its usual ``[CLS] ... [SEP]``.

Transcripts longer than ``max_length`` tokens lose tokens on the LEFT, so the response, which sits
at the end, survives. Cutting on the right would make both sides of many long pairs identical
(the shared conversation fills the window) and therefore unlearnable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

Turn = Mapping[str, str]
Conversation = Sequence[Turn]


def has_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def join_plain(conversation: Conversation, response: str) -> str:
    """The documented fallback format: one ``"role: content"`` line per turn, response last."""
    lines = [f"{turn['role']}: {turn['content']}" for turn in conversation]
    lines.append(f"assistant: {response}")
    return "\n".join(lines)


def render_transcript(
    tokenizer: PreTrainedTokenizerBase, conversation: Conversation, response: str
) -> str:
    if not has_chat_template(tokenizer):
        return join_plain(conversation, response)
    messages = [{"role": turn["role"], "content": turn["content"]} for turn in conversation] + [
        {"role": "assistant", "content": response}
    ]
    rendered: str = tokenizer.apply_chat_template(messages, tokenize=False)
    return rendered


@dataclass(frozen=True)
class EncodedTranscripts:
    input_ids: list[list[int]]
    truncated: list[bool]

    @property
    def truncated_count(self) -> int:
        return sum(self.truncated)

    @property
    def token_count(self) -> int:
        return sum(len(ids) for ids in self.input_ids)


def encode_transcripts(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int
) -> EncodedTranscripts:
    """Tokenize rendered transcripts, cutting overlong ones from the left to ``max_length``."""
    texts = list(texts)
    if not texts:
        return EncodedTranscripts(input_ids=[], truncated=[])
    add_special_tokens = not has_chat_template(tokenizer)
    input_ids = tokenizer(
        texts, add_special_tokens=add_special_tokens, truncation=False, verbose=False
    )["input_ids"]
    overlong = [index for index, ids in enumerate(input_ids) if len(ids) > max_length]
    if overlong and not add_special_tokens:
        # The template's special tokens are plain text here, so a left cut would drop its leading
        # BOS (Llama-3's "{{ bos_token }}"), which the model always saw in training: keep it.
        bos = tokenizer.bos_token_id
        for index in overlong:
            ids = input_ids[index]
            keeps_bos = bos is not None and ids[0] == bos
            input_ids[index] = [bos, *ids[-(max_length - 1) :]] if keeps_bos else ids[-max_length:]
    elif overlong:
        # Re-tokenizing (instead of slicing ids) lets the tokenizer keep its own special tokens,
        # e.g. BERT's leading [CLS], while dropping content from the left.
        previous_side = tokenizer.truncation_side
        tokenizer.truncation_side = "left"
        try:
            shortened = tokenizer(
                [texts[index] for index in overlong],
                add_special_tokens=add_special_tokens,
                truncation=True,
                max_length=max_length,
            )["input_ids"]
        finally:
            tokenizer.truncation_side = previous_side
        for index, ids in zip(overlong, shortened, strict=True):
            input_ids[index] = ids
    overlong_set = set(overlong)
    return EncodedTranscripts(
        input_ids=[list(ids) for ids in input_ids],
        truncated=[index in overlong_set for index in range(len(texts))],
    )
