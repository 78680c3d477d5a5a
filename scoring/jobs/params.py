"""Typed job parameters: one frozen dataclass per job kind, parsed one way.

Each kind's schema (``TrainParams``, ``LoopParams`` and ``ScoreParams`` in
``scoring.loop.params``, ``CurationParams`` in ``scoring.datasets.curation``, ``ExportFilters``
in ``scoring.datasets.export``) derives from ``JobParams``; the API, the dashboard forms and the
management commands all build it with ``Schema.from_params(mapping)`` (or its constructor) and
a job row stores ``schema.as_params()``. ``from_params`` converts each value to its field's
type (numbers and booleans may arrive as text from forms and query strings), refuses names the
schema does not know, and raises the schema's ``error`` (an ApplicationError: a 400 from the
API) naming the field. A schema's ``__post_init__`` checks ranges and choices.
``params_serializer`` derives a DRF serializer from a schema for the OpenAPI document.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from typing import Any, ClassVar, Self

from rest_framework import serializers

from core.errors import ApplicationError, BadRequest
from core.validation import ASCII_INTEGER

# What a form or query string may spell a decimal number as (whole ones: ASCII_INTEGER).
_NUMBER = re.compile(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class JobParams:
    """Mixin for a frozen dataclass of job parameters (see the module docstring)."""

    # The error raised for bad parameters; each kind sets its own (JobError, CurationError, ...).
    error: ClassVar[type[ApplicationError]] = BadRequest
    # Allowed values of a text field (or of a list field's items), for the OpenAPI document;
    # __post_init__ enforces them.
    choices: ClassVar[dict[str, Sequence[str]]] = {}

    @classmethod
    def fail(cls, message: str) -> ApplicationError:
        return cls.error(message)

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        return {field.name: hints[field.name] for field in dataclasses.fields(cls)}  # type: ignore[arg-type]

    @classmethod
    def from_params(
        cls,
        params: Mapping[str, Any] | None,
        *,
        fields: Collection[str] | None = None,
        ignore_unknown: bool = False,
    ) -> Self:
        """The schema from a mapping (JSON body, form data, a job row's params).

        ``fields`` limits the names a caller may set (the API exposes fewer than the command
        line); ``ignore_unknown`` skips other names instead of refusing them (for rows stored
        before a parameter was retired). Missing names, and None or "" for a field that is
        not optional, take the field's default.
        """
        params = params if params is not None else {}
        if not isinstance(params, Mapping):
            raise cls.fail(f"expected an object of named parameters, got {type(params).__name__}")
        types_ = cls.field_types()
        allowed = set(types_) if fields is None else set(fields) & set(types_)
        unknown = sorted(set(params) - allowed)
        if unknown and not ignore_unknown:
            raise cls.fail(f"unknown parameter {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name in sorted(allowed & set(params)):
            kind = types_[name]
            raw = _raw_value(params, name, kind)
            optional = _is_optional(kind)
            if raw is None or (raw == "" and not optional):
                if optional:
                    values[name] = None
                continue
            try:
                values[name] = _convert(raw, _strip_optional(kind))
            except (TypeError, ValueError) as error:
                raise cls.fail(f"{name}: {error}") from error
        return cls(**values)

    def as_params(self) -> dict[str, Any]:
        """What a job row stores: JSON types, fields left at None omitted."""
        stored: dict[str, Any] = {}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if value is None:
                continue
            stored[field.name] = list(value) if isinstance(value, tuple) else value
        return stored


def _is_optional(kind: Any) -> bool:
    return isinstance(kind, types.UnionType) and type(None) in typing.get_args(kind)


def _strip_optional(kind: Any) -> Any:
    if isinstance(kind, types.UnionType):
        (inner,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return inner
    return kind


def _raw_value(params: Mapping[str, Any], name: str, kind: Any) -> Any:
    # Form data (a QueryDict) holds lists of values: take all of them for a tuple field.
    if typing.get_origin(_strip_optional(kind)) is tuple and hasattr(params, "getlist"):
        return params.getlist(name)
    return params[name]


def _convert(value: Any, kind: Any) -> Any:
    if typing.get_origin(kind) is tuple:
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
            raise TypeError(f"expected a list, got {value!r}")
        (item_kind, _ellipsis) = typing.get_args(kind)
        return tuple(_convert(item, item_kind) for item in value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise TypeError(f"expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError(f"expected a whole number, got {value!r}")
        if isinstance(value, str) and not ASCII_INTEGER.fullmatch(value):
            raise ValueError(f"expected a whole number, got {value!r}")
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise TypeError(f"expected a number, got {value!r}")
        if isinstance(value, str) and not _NUMBER.fullmatch(value):
            raise ValueError(f"expected a number, got {value!r}")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"expected a finite number, got {value!r}")
        return number
    if kind is str:
        if not isinstance(value, str):
            raise TypeError(f"expected text, got {value!r}")
        if "\x00" in value:
            # PostgreSQL's jsonb refuses "\u0000": the job row could not be stored.
            raise ValueError("text may not contain NUL characters")
        return value
    raise TypeError(f"unsupported parameter type {kind!r}")  # a schema bug, not user input


def _serializer_field(
    kind: Any, default: Any, choices: Sequence[str] | None = None
) -> serializers.Field[Any, Any, Any, Any]:
    optional = _is_optional(kind)
    kind = _strip_optional(kind)
    options: dict[str, Any] = {"required": False, "allow_null": optional}
    if default is not dataclasses.MISSING and default is not None:
        options["default"] = list(default) if isinstance(default, tuple) else default
    if typing.get_origin(kind) is tuple:
        (item_kind, _ellipsis) = typing.get_args(kind)
        child = _serializer_field(item_kind, None, choices)
        return serializers.ListField(child=child, **options)
    if choices:
        return serializers.ChoiceField(choices=list(choices), **options)
    field_class = {
        bool: serializers.BooleanField,
        int: serializers.IntegerField,
        float: serializers.FloatField,
        str: serializers.CharField,
    }[kind]
    field: serializers.Field[Any, Any, Any, Any] = field_class(**options)
    return field


def params_serializer(
    schema: type[JobParams], *, fields: Collection[str] | None = None
) -> type[serializers.Serializer[Any]]:
    """A DRF serializer describing ``schema`` (or the named fields of it), for the OpenAPI
    document only: requests are parsed by ``schema.from_params``."""
    types_ = schema.field_types()
    defaults = {field.name: field.default for field in dataclasses.fields(schema)}  # type: ignore[arg-type]
    names = [name for name in types_ if fields is None or name in fields]
    attributes = {
        name: _serializer_field(types_[name], defaults[name], schema.choices.get(name))
        for name in names
    }
    return type(f"{schema.__name__}Serializer", (serializers.Serializer,), attributes)
