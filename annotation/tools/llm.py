"""A minimal client for an OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp, …).

No Django here: the service passes the settings in. The request is the standard
`POST <base>/chat/completions` with {"model", "messages", "temperature"}; the answer is
`choices[0].message.content`. `base` is ARBITER_LLM_URL, e.g. http://localhost:11434/v1 (a URL
that already ends in /chat/completions is used as it is).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from annotation.tools.http import EndpointError, fetch_within
from core.text import without_lone_surrogates

TIMEOUT_S = 60.0
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
MAX_QUESTION_CHARS = 4000
# Long pairs are cut so that one request stays within a small model's context window.
MAX_PAIR_CHARS = 24_000

_ROLE_OF_THE_MODEL = (
    "Answer the annotator's question with facts, explanations or checks. The annotator makes "
    "the decision and must write their own rationale: do not hand down a verdict, and say so "
    "if asked for one."
)
SYSTEM_PROMPT = (
    "You help a human annotator who compares two AI responses (A and B) to the same "
    f"conversation. {_ROLE_OF_THE_MODEL}"
)
RANKING_SYSTEM_PROMPT = (
    "You help a human annotator who ranks {count} AI responses (numbered 1 to {count}) to the "
    f"same conversation. {_ROLE_OF_THE_MODEL}"
)


class LlmUnavailable(RuntimeError):
    """The model endpoint is not configured, unreachable, or answered with something unusable."""


@dataclass(frozen=True)
class LlmAnswer:
    model: str
    answer: str


def chat_url(base_url: str) -> str:
    try:
        scheme = urllib.parse.urlsplit(base_url).scheme
    except ValueError as exc:  # e.g. an unclosed "[" of an IPv6 address
        raise LlmUnavailable(f"LLM_URL is not a URL: {exc}") from exc
    if scheme not in {"http", "https"}:
        raise LlmUnavailable(f"LLM_URL must be an http(s) URL, not {base_url!r}")
    base = base_url.rstrip("/")
    return base if base.endswith("/chat/completions") else f"{base}/chat/completions"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "\n[… cut for length …]"


def pair_messages(
    *, conversation: list[dict[str, Any]], response_a: str, response_b: str, question: str
) -> list[dict[str, str]]:
    """The pair as the annotator sees it, then their question."""
    return _item_messages(
        SYSTEM_PROMPT, conversation, [("A", response_a), ("B", response_b)], question
    )


def ranking_messages(
    *, conversation: list[dict[str, Any]], responses: list[str], question: str
) -> list[dict[str, str]]:
    """A K-wise item as the annotator sees it (``responses`` in display order, numbered from 1
    as on the page), then their question."""
    system = RANKING_SYSTEM_PROMPT.format(count=len(responses))
    numbered = [(str(number), text) for number, text in enumerate(responses, start=1)]
    return _item_messages(system, conversation, numbered, question)


def _item_messages(
    system: str,
    conversation: list[dict[str, Any]],
    responses: list[tuple[str, str]],
    question: str,
) -> list[dict[str, str]]:
    turns = "\n\n".join(
        f"[{turn.get('role', 'user')}]\n{turn.get('content', '')}" for turn in conversation
    )
    # The conversation and each response get an equal share.
    budget = MAX_PAIR_CHARS // (len(responses) + 1)
    parts = [f"## Conversation\n{_clip(turns, budget)}"] + [
        f"## Response {name}\n{_clip(text, budget)}" for name, text in responses
    ]
    item = "\n\n".join(parts)
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": f"{item}\n\n## My question\n{question}"},
    ]


def chat(
    *,
    base_url: str,
    model: str,
    messages: list[dict[str, str]],
    key: str = "",
    timeout_s: float = TIMEOUT_S,
) -> LlmAnswer:
    url = chat_url(base_url)
    payload = {"model": model, "messages": messages, "temperature": 0.2, "stream": False}
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(  # noqa: S310 - chat_url allows only http(s)
        url, data=json.dumps(payload).encode(), headers=headers, method="POST"
    )
    try:
        body = fetch_within(
            request,
            timeout_s=timeout_s,
            limit=MAX_RESPONSE_BYTES + 1,
            service="the model endpoint",
            url_setting="ARBITER_LLM_URL",
        )
    except urllib.error.HTTPError as exc:
        raise LlmUnavailable(f"the model endpoint answered HTTP {exc.code}") from exc
    except EndpointError as exc:
        raise LlmUnavailable(str(exc)) from exc
    if len(body) > MAX_RESPONSE_BYTES:
        raise LlmUnavailable("the model endpoint sent more than 4 MiB")
    try:
        data = json.loads(body)
        answer = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise LlmUnavailable("the model endpoint sent no chat completion") from exc
    if not isinstance(answer, str):
        raise LlmUnavailable("the model endpoint sent no text")
    # JSON may escape a lone surrogate ("\ud800"), which the evidence could not store.
    return LlmAnswer(
        model=without_lone_surrogates(str(data.get("model") or model)),
        answer=without_lone_surrogates(answer),
    )
