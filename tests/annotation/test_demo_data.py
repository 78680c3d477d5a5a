from __future__ import annotations

import io
import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from annotation.demo_data import generate_demo_pairs
from annotation.importers import ATTRIBUTE_NAMES, parse_all

# Independent answer keys, typed here rather than imported, so a wrong entry in the
# generator's tables shows up as a failure.
CAPITALS = {
    "France": "Paris",
    "Germany": "Berlin",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Portugal": "Lisbon",
    "Japan": "Tokyo",
    "Canada": "Ottawa",
    "Australia": "Canberra",
    "Brazil": "Brasília",
    "Egypt": "Cairo",
    "Kenya": "Nairobi",
    "India": "New Delhi",
    "Norway": "Oslo",
    "Sweden": "Stockholm",
    "Poland": "Warsaw",
    "Turkey": "Ankara",
    "Argentina": "Buenos Aires",
    "Mexico": "Mexico City",
    "South Korea": "Seoul",
    "Switzerland": "Bern",
    "New Zealand": "Wellington",
    "Nigeria": "Abuja",
    "Vietnam": "Hanoi",
    "Peru": "Lima",
    "Ireland": "Dublin",
}
SYMBOLS = {
    "hydrogen": "H",
    "helium": "He",
    "carbon": "C",
    "nitrogen": "N",
    "oxygen": "O",
    "sodium": "Na",
    "magnesium": "Mg",
    "potassium": "K",
    "calcium": "Ca",
    "iron": "Fe",
    "copper": "Cu",
    "silver": "Ag",
    "gold": "Au",
    "lead": "Pb",
    "tin": "Sn",
    "mercury": "Hg",
    "sulfur": "S",
    "chlorine": "Cl",
    "zinc": "Zn",
    "tungsten": "W",
}
PLANET_BY_ORDINAL = {
    "first": "Mercury",
    "second": "Venus",
    "third": "Earth",
    "fourth": "Mars",
    "fifth": "Jupiter",
    "sixth": "Saturn",
    "seventh": "Uranus",
    "eighth": "Neptune",
}


def _fibonacci(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def _factorial(n: int) -> int:
    result = 1
    for i in range(2, n + 1):
        result *= i
    return result


# Reference behaviour and probe inputs for each function the generator asks for.
CODE_REFERENCES: dict[str, tuple[Callable[..., Any], list[tuple[Any, ...]]]] = {
    "sum_to": (lambda n: n * (n + 1) // 2, [(0,), (1,), (5,), (10,)]),
    "factorial": (_factorial, [(0,), (1,), (3,), (6,)]),
    "is_even": (lambda n: n % 2 == 0, [(0,), (3,), (8,), (-5,)]),
    "largest": (max, [([3, 9, 2],), ([-4, -2, -9],), ([5],)]),
    "average": (lambda xs: sum(xs) / len(xs), [([1, 2],), ([2, 4, 6],), ([1, 1, 2],)]),
    "clamp": (lambda x, lo, hi: min(max(x, lo), hi), [(5, 0, 10), (-3, 0, 10), (12, 0, 10)]),
    "is_leap_year": (
        lambda y: y % 4 == 0 and (y % 100 != 0 or y % 400 == 0),
        [(1900,), (2000,), (2024,), (2023,)],
    ),
    "last_items": (lambda items, n: items[-n:], [([1, 2, 3, 4], 2), ([1, 2, 3], 3)]),
    "count_vowels": (
        lambda text: sum(ch in "aeiouAEIOU" for ch in text),
        [("hello",), ("AEIOU xyz",), ("",)],
    ),
    "fibonacci": (_fibonacci, [(0,), (1,), (2,), (10,)]),
}


def correct_and_wrong(row: dict[str, Any]) -> tuple[str, str]:
    if row["expected_preference"] == 1:
        return row["response_a"], row["response_b"]
    return row["response_b"], row["response_a"]


def final_number(response: str) -> int:
    return int(re.findall(r"\*\*(-?\d+)\*\*", response)[-1])


def true_arithmetic_answer(conversation: list[dict[str, str]]) -> int:
    question = re.fullmatch(r"What is (\d+) ([+×-]) (\d+)\?", conversation[0]["content"])
    assert question is not None
    left, operator, right = question.groups()
    value = {"+": int(left) + int(right), "-": int(left) - int(right), "×": int(left) * int(right)}[
        operator
    ]
    if len(conversation) > 1:
        factor = re.fullmatch(r"Now multiply that by (\d+)\.", conversation[-1]["content"])
        assert factor is not None
        value *= int(factor.group(1))
    return value


def true_fact(question: str) -> str:
    if match := re.fullmatch(r"What is the capital of (.+)\?", question):
        return f"**{CAPITALS[match.group(1)]}**"
    if match := re.fullmatch(r"What is the chemical symbol for (.+)\?", question):
        return f"`{SYMBOLS[match.group(1)]}`"
    match = re.fullmatch(r"Which planet is the (\w+) from the Sun\?", question)
    assert match is not None
    return f"**{PLANET_BY_ORDINAL[match.group(1)]}**"


def run_function(response: str) -> Callable[..., Any]:
    block = re.search(r"```python\n(.*?)\n```", response, re.DOTALL)
    assert block is not None
    code = block.group(1)
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 - our own generated demo code, run to check it
    (function,) = [value for name, value in namespace.items() if not name.startswith("__")]
    return function


def passes_reference(function: Callable[..., Any], name: str) -> bool:
    reference, probes = CODE_REFERENCES[name]
    return all(function(*args) == reference(*args) for args in probes)


@pytest.fixture(scope="module")
def demo_rows() -> list[dict[str, Any]]:
    return generate_demo_pairs(600, seed=7)


def test_it_is_deterministic_per_seed() -> None:
    assert generate_demo_pairs(50, seed=1) == generate_demo_pairs(50, seed=1)
    assert generate_demo_pairs(50, seed=1) != generate_demo_pairs(50, seed=2)
    assert generate_demo_pairs(0) == []


def test_it_round_trips_through_the_importer(demo_rows: list[dict[str, Any]]) -> None:
    data = b"".join(json.dumps(row).encode() + b"\n" for row in demo_rows)

    records = parse_all(io.BytesIO(data), filename="demo.jsonl")

    assert len(records) == len(demo_rows)
    assert len({record.content_hash for record in records}) == len(demo_rows)
    for record, row in zip(records, demo_rows, strict=True):
        assert record.raw_format == "native"
        assert record.silver_preference == row["expected_preference"]
        assert record.external_id == row["external_id"]
        assert set(record.attributes) == set(ATTRIBUTE_NAMES)
        assert record.attributes["objectivity"] == "objective"
        assert record.attributes["controversiality"] == "low"


def test_it_mixes_categories_placements_and_turns(demo_rows: list[dict[str, Any]]) -> None:
    categories = Counter(row["attributes"]["task_category"] for row in demo_rows)
    assert set(categories) == {"math", "factual", "code"}
    assert categories == {"math": 200, "factual": 200, "code": 200}
    a_correct = sum(row["expected_preference"] == 1 for row in demo_rows)
    assert 0.4 * len(demo_rows) < a_correct < 0.6 * len(demo_rows)
    multi_turn = [row for row in demo_rows if len(row["conversation"]) > 1]
    assert {row["attributes"]["task_category"] for row in multi_turn} == {"math", "factual", "code"}
    assert any("```python" in row["response_a"] for row in demo_rows)


def test_the_expected_side_of_every_arithmetic_pair_is_right(
    demo_rows: list[dict[str, Any]],
) -> None:
    math_rows = [row for row in demo_rows if row["attributes"]["task_category"] == "math"]
    for row in math_rows:
        correct, wrong = correct_and_wrong(row)
        answer = true_arithmetic_answer(row["conversation"])
        assert final_number(correct) == answer
        assert final_number(wrong) != answer


def test_the_expected_side_of_every_factual_pair_is_right(
    demo_rows: list[dict[str, Any]],
) -> None:
    factual = [row for row in demo_rows if row["attributes"]["task_category"] == "factual"]
    for row in factual:
        correct, wrong = correct_and_wrong(row)
        truth = true_fact(row["conversation"][-1]["content"])
        assert truth in correct
        assert truth not in wrong


def test_the_expected_side_of_every_code_pair_runs_correctly(
    demo_rows: list[dict[str, Any]],
) -> None:
    code_rows = [row for row in demo_rows if row["attributes"]["task_category"] == "code"]
    names_seen = set()
    for row in code_rows:
        correct, wrong = correct_and_wrong(row)
        correct_function, wrong_function = run_function(correct), run_function(wrong)
        name = correct_function.__name__
        names_seen.add(name)
        assert wrong_function.__name__ == name
        assert passes_reference(correct_function, name)
        assert not passes_reference(wrong_function, name)
    assert names_seen == set(CODE_REFERENCES)
