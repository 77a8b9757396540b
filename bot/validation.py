"""How the API and the console word a pydantic validation error: the first problem, by field."""

from __future__ import annotations

from pydantic import ValidationError


def first_error(exc: ValidationError) -> tuple[str | None, str]:
    """The first problem of a validation error: the field's dotted path and what is wrong."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "is not a known field"
    elif first["type"] == "missing":
        message = "is required"
    return field, message
