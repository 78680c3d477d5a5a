"""Review 19b: an evaluation prompt list whose ``prompt`` is a message list (as many Hugging
Face preference sets store it) gave no prompt for those rows, silently: decontamination then
missed them. Its user turns are the prompt, as for ``conversation`` or ``messages``."""

from __future__ import annotations

import io
import json

from scoring.datasets.curation import EvaluationIndex, evaluation_prompts_read

QUESTION = "Explain in two sentences why the sky looks blue at noon and red at dusk please"


def test_a_prompt_given_as_a_message_list_is_read():
    rows = [
        {"prompt": [{"role": "user", "content": QUESTION}], "chosen": "Rayleigh.", "rejected": "?"},
        {"prompt": "A plain prompt of its own", "chosen": "yes", "rejected": "no"},
    ]
    raw = "".join(json.dumps(row) + "\n" for row in rows).encode()
    prompts = evaluation_prompts_read(io.BytesIO(raw), filename="bench.jsonl")
    assert prompts == [QUESTION, "A plain prompt of its own"]
    index = EvaluationIndex()
    for prompt in prompts:
        index.add(prompt)
    assert index.contaminates([f"Hi! {QUESTION}"])
