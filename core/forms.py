"""Form fields every app's forms share."""

from __future__ import annotations

from typing import Any

from django import forms

from core.text import typed_length


class TypedTextField(forms.CharField):
    """What someone types into a textarea, at most ``typed_max`` characters as typed: a line
    break counts one (``core.text.typed_length``), as the textarea's maxlength counts it.
    A form's max_length would count the CRLF a browser posts for each line break as two, and
    refuse text typed up to the box's limit. The textarea gets that maxlength."""

    def __init__(self, *, typed_max: int, **kwargs: Any) -> None:
        self.typed_max = typed_max
        kwargs.setdefault("widget", forms.Textarea)
        super().__init__(**kwargs)

    def widget_attrs(self, widget: forms.Widget) -> dict[str, Any]:
        return {**super().widget_attrs(widget), "maxlength": str(self.typed_max)}

    def validate(self, value: Any) -> None:
        super().validate(value)
        if value and typed_length(value) > self.typed_max:
            raise forms.ValidationError(
                f"At most {self.typed_max:,} characters.", code="max_length"
            )
