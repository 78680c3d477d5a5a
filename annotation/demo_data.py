"""Deterministic demo pairs whose better answer can be checked.

Each pair puts a correct answer against a subtly wrong one: arithmetic (off by a little),
short facts (capitals, chemical symbols, planets) and small Python functions (off-by-one,
wrong operator). Rows are in the importer's native format plus `expected_preference`: +1 if
response A is the correct one, -1 if B is. The correct side is placed at random, and
silver_preference repeats expected_preference so the demo can exercise silver labels.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from annotation.importers.records import content_hash

DEMO_SOURCE = "arbiter-demo"
GUIDELINES = {
    "math": "Prefer the response whose final number is correct; check the arithmetic yourself.",
    "factual": "Prefer the factually correct answer; wording and length do not matter here.",
    "code": "Prefer the function that returns the right result for every input, edge cases "
    "included; run it if unsure.",
}

CAPITALS = (
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Portugal", "Lisbon"),
    ("Japan", "Tokyo"),
    ("Canada", "Ottawa"),
    ("Australia", "Canberra"),
    ("Brazil", "Brasília"),
    ("Egypt", "Cairo"),
    ("Kenya", "Nairobi"),
    ("India", "New Delhi"),
    ("Norway", "Oslo"),
    ("Sweden", "Stockholm"),
    ("Poland", "Warsaw"),
    ("Turkey", "Ankara"),
    ("Argentina", "Buenos Aires"),
    ("Mexico", "Mexico City"),
    ("South Korea", "Seoul"),
    ("Switzerland", "Bern"),
    ("New Zealand", "Wellington"),
    ("Nigeria", "Abuja"),
    ("Vietnam", "Hanoi"),
    ("Peru", "Lima"),
    ("Ireland", "Dublin"),
)
CHEMICAL_SYMBOLS = (
    ("hydrogen", "H"),
    ("helium", "He"),
    ("carbon", "C"),
    ("nitrogen", "N"),
    ("oxygen", "O"),
    ("sodium", "Na"),
    ("magnesium", "Mg"),
    ("potassium", "K"),
    ("calcium", "Ca"),
    ("iron", "Fe"),
    ("copper", "Cu"),
    ("silver", "Ag"),
    ("gold", "Au"),
    ("lead", "Pb"),
    ("tin", "Sn"),
    ("mercury", "Hg"),
    ("sulfur", "S"),
    ("chlorine", "Cl"),
    ("zinc", "Zn"),
    ("tungsten", "W"),
)
PLANETS = ("Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune")
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")

DEMO_CORPUS_NAME = "Demo facts"
DEMO_CORPUS_SOURCE = "Arbiter demo corpus"


def demo_corpus_documents() -> list[dict[str, str]]:
    """Short reference articles answering every factual question the demo asks.

    Capitals, chemical symbols and the planets' order: loaded by `seed_demo` so that the
    search tool finds the facts the guidelines tell annotators to check.
    """
    documents = [
        {
            "title": f"{country}",
            "body": f"{capital} is the capital of {country}. The capital city of {country} "
            f"is {capital}.",
        }
        for country, capital in CAPITALS
    ]
    documents += [
        {
            "title": f"{element.capitalize()} (chemical element)",
            "body": f"{element.capitalize()} is a chemical element with the chemical symbol "
            f"{symbol}. The symbol for {element} is {symbol}.",
        }
        for element, symbol in CHEMICAL_SYMBOLS
    ]
    documents += [
        {
            "title": f"{planet} (planet)",
            "body": f"{planet} is the {ORDINALS[position]} planet from the Sun in the Solar "
            f"System. Order from the Sun: {', '.join(PLANETS)}.",
        }
        for position, planet in enumerate(PLANETS)
    ]
    return [{**document, "source": DEMO_CORPUS_SOURCE} for document in documents]


@dataclass(frozen=True)
class CodeTask:
    """A small function with a correct body and a subtly wrong one."""

    request: str
    correct: str
    wrong: str
    flaw: str


CODE_TASKS = (
    CodeTask(
        "Write a Python function `sum_to(n)` that returns the sum of the integers from 1 to n "
        "inclusive.",
        "def sum_to(n):\n    total = 0\n    for i in range(1, n + 1):\n        total += i\n"
        "    return total",
        "def sum_to(n):\n    total = 0\n    for i in range(1, n):\n        total += i\n"
        "    return total",
        "off-by-one",
    ),
    CodeTask(
        "Write a Python function `factorial(n)` for n >= 0.",
        "def factorial(n):\n    result = 1\n    for i in range(2, n + 1):\n        result *= i\n"
        "    return result",
        "def factorial(n):\n    result = 1\n    for i in range(2, n):\n        result *= i\n"
        "    return result",
        "off-by-one",
    ),
    CodeTask(
        "Write a Python function `is_even(n)` that returns True when n is even.",
        "def is_even(n):\n    return n % 2 == 0",
        "def is_even(n):\n    return n % 2 == 1",
        "wrong comparison",
    ),
    CodeTask(
        "Write a Python function `largest(items)` that returns the largest number in a "
        "non-empty list.",
        "def largest(items):\n    best = items[0]\n    for item in items[1:]:\n"
        "        if item > best:\n            best = item\n    return best",
        "def largest(items):\n    best = items[0]\n    for item in items[1:]:\n"
        "        if item < best:\n            best = item\n    return best",
        "wrong operator",
    ),
    CodeTask(
        "Write a Python function `average(numbers)` that returns the arithmetic mean of a "
        "non-empty list of numbers.",
        "def average(numbers):\n    return sum(numbers) / len(numbers)",
        "def average(numbers):\n    return sum(numbers) // len(numbers)",
        "wrong operator",
    ),
    CodeTask(
        "Write a Python function `clamp(x, low, high)` that limits x to the range [low, high].",
        "def clamp(x, low, high):\n    return max(low, min(x, high))",
        "def clamp(x, low, high):\n    return min(low, max(x, high))",
        "swapped min and max",
    ),
    CodeTask(
        "Write a Python function `is_leap_year(year)` for the Gregorian calendar.",
        "def is_leap_year(year):\n    return (year % 4 == 0 and year % 100 != 0) "
        "or year % 400 == 0",
        "def is_leap_year(year):\n    return year % 4 == 0 and year % 100 != 0",
        "missing case",
    ),
    CodeTask(
        "Write a Python function `last_items(items, n)` that returns the last n items of a "
        "list, for 1 <= n <= len(items).",
        "def last_items(items, n):\n    return items[len(items) - n:]",
        "def last_items(items, n):\n    return items[len(items) - n + 1:]",
        "off-by-one",
    ),
    CodeTask(
        "Write a Python function `count_vowels(text)` that counts the vowels (a, e, i, o, u) "
        "in a string, in either case.",
        'def count_vowels(text):\n    return sum(1 for ch in text.lower() if ch in "aeiou")',
        'def count_vowels(text):\n    return sum(1 for ch in text if ch in "aeiou")',
        "ignores upper case",
    ),
    CodeTask(
        "Write a Python function `fibonacci(n)` that returns the n-th Fibonacci number, with "
        "fibonacci(0) == 0 and fibonacci(1) == 1.",
        "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n"
        "    return a",
        "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n - 1):\n        a, b = b, a + b\n"
        "    return a",
        "off-by-one",
    ),
)

Turns = list[dict[str, str]]
PairMaker = Callable[[random.Random], tuple[Turns, str, str, str]]


def generate_demo_pairs(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """n native-format rows, the same for the same seed, with distinct content hashes.

    Categories rotate math, factual, code. Facts and code tasks are finite (about 1,900
    distinct code pairs), so once a category keeps repeating itself the pair is arithmetic
    instead, whose space is unbounded.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not security
    makers: tuple[PairMaker, ...] = (_arithmetic_pair, _factual_pair, _code_pair)
    seen: set[str] = set()
    rows = []
    for index in range(n):
        maker = makers[index % len(makers)]
        for attempt in range(30):
            if attempt >= 20:
                maker = _arithmetic_pair  # this category's combinations are used up
            conversation, correct, wrong, category = maker(rng)
            correct_is_a = rng.random() < 0.5
            response_a, response_b = (correct, wrong) if correct_is_a else (wrong, correct)
            digest = content_hash(conversation, response_a, response_b)
            if digest not in seen:
                break
        seen.add(digest)
        expected = 1 if correct_is_a else -1
        rows.append(
            {
                "external_id": f"demo-{seed}-{index:06d}",
                "source": DEMO_SOURCE,
                "conversation": conversation,
                "response_a": response_a,
                "response_b": response_b,
                "attributes": {
                    "task_category": category,
                    "objectivity": "objective",
                    "controversiality": "low",
                    "desired_attributes": "correctness",
                    "annotation_guideline": GUIDELINES[category],
                },
                "silver_preference": expected,
                "expected_preference": expected,
            }
        )
    return rows


def _user(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def _assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


def _near_miss(rng: random.Random, value: int) -> int:
    """A wrong result a careless solver might give: off by a little, or by a power of ten."""
    if rng.random() < 0.25:
        return value + rng.choice((-100, -10, 10, 100))
    return value + rng.choice((-1, 1)) * rng.randint(1, 9)


def _arithmetic_answer(expression: str, value: int, steps: list[str]) -> str:
    if not steps:
        return f"{expression} = **{value}**"
    working = "\n".join(f"= {step}" for step in steps)
    return f"Working it out:\n\n```\n{expression}\n{working}\n```\n\nSo the answer is **{value}**."


def _arithmetic_pair(rng: random.Random) -> tuple[Turns, str, str, str]:
    operator = rng.choice(("+", "-", "×"))
    left, right = rng.randint(12, 999), rng.randint(12, 999)
    if operator == "+":
        value, steps = left + right, list[str]()
    elif operator == "-":
        value, steps = left - right, []
    else:
        left, right = rng.randint(12, 99), rng.randint(12, 99)
        tens, units = right - right % 10, right % 10
        value = left * right
        steps = [f"{left} × {tens} + {left} × {units}", f"{left * tens} + {left * units}"]
    expression = f"{left} {operator} {right}"
    wrong = _near_miss(rng, value)
    if rng.random() < 0.3:
        factor = rng.randint(2, 9)
        conversation = [
            _user(f"What is {expression}?"),
            _assistant(_arithmetic_answer(expression, value, steps)),
            _user(f"Now multiply that by {factor}."),
        ]
        follow_up = f"{value} × {factor}"
        return (
            conversation,
            _arithmetic_answer(follow_up, value * factor, []),
            _arithmetic_answer(follow_up, _near_miss(rng, value * factor), []),
            "math",
        )
    return (
        [_user(f"What is {expression}?")],
        _arithmetic_answer(expression, value, steps),
        _arithmetic_answer(expression, wrong, steps),
        "math",
    )


def _fact(rng: random.Random) -> tuple[str, str, str]:
    """A question, its correct answer and a plausible wrong answer."""
    kind = rng.choice(("capital", "symbol", "planet"))
    if kind == "capital":
        (country, capital), (_, other) = rng.sample(CAPITALS, 2)
        answer = "The capital of {} is **{}**."
        return (
            f"What is the capital of {country}?",
            answer.format(country, capital),
            answer.format(country, other),
        )
    if kind == "symbol":
        (element, symbol), (_, other) = rng.sample(CHEMICAL_SYMBOLS, 2)
        answer = "The chemical symbol for {} is `{}`."
        return (
            f"What is the chemical symbol for {element}?",
            answer.format(element, symbol),
            answer.format(element, other),
        )
    position = rng.randrange(len(PLANETS))
    neighbour = rng.choice([p for p in (position - 1, position + 1) if 0 <= p < len(PLANETS)])
    ordinal = ORDINALS[position]
    answer = "**{}** is the {} planet from the Sun."
    return (
        f"Which planet is the {ordinal} from the Sun?",
        answer.format(PLANETS[position], ordinal),
        answer.format(PLANETS[neighbour], ordinal),
    )


def _factual_pair(rng: random.Random) -> tuple[Turns, str, str, str]:
    question, correct, wrong = _fact(rng)
    if rng.random() < 0.3:
        warm_up, warm_up_answer, _ = _fact(rng)
        if warm_up != question:
            conversation = [_user(warm_up), _assistant(warm_up_answer), _user(question)]
            return conversation, correct, wrong, "factual"
    return [_user(question)], correct, wrong, "factual"


CODE_INTROS = (
    "Here is one way to write it:",
    "Sure:",
    "This does it:",
    "Here you go:",
    "A straightforward version:",
    "Try this:",
)
CODE_OUTROS = (
    "",
    "It only uses built-ins.",
    "Call it like any other function.",
    "No imports are needed.",
)
CODE_FOLLOW_UPS = (
    "Please write it again so I can paste it, in one code block.",
    "Can you show it once more without the explanation?",
    "I lost the code, could you repeat it?",
)


def _code_answer(code: str, intro: str, outro: str = "") -> str:
    answer = f"{intro}\n\n```python\n{code}\n```"
    return f"{answer}\n\n{outro}" if outro else answer


def _code_pair(rng: random.Random) -> tuple[Turns, str, str, str]:
    task = rng.choice(CODE_TASKS)
    intro, outro = rng.choice(CODE_INTROS), rng.choice(CODE_OUTROS)
    correct = _code_answer(task.correct, intro, outro)
    wrong = _code_answer(task.wrong, intro, outro)
    if rng.random() < 0.3:
        conversation = [
            _user(task.request),
            _assistant(_code_answer(task.correct, "Here it is:")),
            _user(rng.choice(CODE_FOLLOW_UPS)),
        ]
        return conversation, correct, wrong, "code"
    return [_user(task.request)], correct, wrong, "code"
