"""A campaign's attribute schema: the values its pairs' short attributes may take. Pure code.

``{"task_category": ["math", "code"], "objectivity": ["objective", "subjective"]}``: an import
refuses a pair whose attribute holds a value not listed (a pair without the attribute passes).
Only the three short attributes, whose values are categories, can be listed; the desired
attributes and the annotation guideline are free text.
"""

from __future__ import annotations

from typing import Any

SCHEMA_ATTRIBUTES = ("task_category", "objectivity", "controversiality")
MAX_VALUES = 1000
MAX_VALUE_CHARS = 100  # the pair's columns' length


class AttributeSchemaError(ValueError):
    """A schema that is not {attribute: [value, ...]} over the short attributes."""


def parse_attribute_schema(raw: Any) -> dict[str, frozenset[str]]:
    """The allowed values per attribute, checked: each a non-empty list of distinct non-empty
    texts of at most 100 characters."""
    if raw in (None, ""):
        return {}
    if not isinstance(raw, dict):
        raise AttributeSchemaError(
            'the attribute schema must be an object such as {"task_category": ["math", "code"]}'
        )
    schema: dict[str, frozenset[str]] = {}
    for name, values in raw.items():
        if name not in SCHEMA_ATTRIBUTES:
            raise AttributeSchemaError(
                f"{name!r} cannot be listed; the attributes that can are "
                + ", ".join(SCHEMA_ATTRIBUTES)
            )
        if not isinstance(values, list) or not values:
            raise AttributeSchemaError(f"{name}: a non-empty list of allowed values is required")
        if len(values) > MAX_VALUES:
            raise AttributeSchemaError(f"{name}: at most {MAX_VALUES:,} values")
        for value in values:
            if not isinstance(value, str) or not value.strip() or value != value.strip():
                raise AttributeSchemaError(
                    f"{name}: {value!r} is not a value (a text, not blank, without spaces "
                    "around it)"
                )
            if len(value) > MAX_VALUE_CHARS:
                raise AttributeSchemaError(
                    f"{name}: {value[:20]!r}… is longer than {MAX_VALUE_CHARS} characters"
                )
        if len(set(values)) != len(values):
            raise AttributeSchemaError(f"{name}: a value is listed twice")
        schema[name] = frozenset(values)
    return schema


def attribute_schema_problem(schema: dict[str, frozenset[str]], attributes: dict[str, Any]) -> str:
    """Why a pair's attributes do not fit the schema, or "" when they do."""
    for name, allowed in schema.items():
        value = attributes.get(name)
        if value and value not in allowed:
            listed = ", ".join(sorted(allowed)[:10]) + (", …" if len(allowed) > 10 else "")
            return f"attributes.{name} {value!r} is not one of this campaign's values ({listed})"
    return ""
