"""One error type for bad input: every message names the field by its input key path."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError


class FieldError(tuple[str, str]):
    """``(field, message)`` where field is a key path such as ``events[3].nrs``."""

    __slots__ = ()

    def __new__(cls, field: str, message: str) -> FieldError:
        return super().__new__(cls, (field, message))

    @property
    def field(self) -> str:
        return self[0]

    @property
    def message(self) -> str:
        return self[1]

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidInput(ValueError):
    """Input rejected before it changed anything."""

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))

    @classmethod
    def one(cls, field: str, message: str) -> InvalidInput:
        return cls([FieldError(field, message)])

    def under(self, prefix: str) -> InvalidInput:
        """The same errors with their fields nested under ``prefix`` (e.g. ``events[3]``)."""
        return InvalidInput(FieldError(join_path(prefix, e.field), e.message) for e in self.errors)

    def as_dicts(self) -> list[dict[str, str]]:
        return [{"field": e.field, "message": e.message} for e in self.errors]


def join_path(prefix: str, field: str) -> str:
    if not prefix:
        return field
    if not field:
        return prefix
    return f"{prefix}{field}" if field.startswith("[") else f"{prefix}.{field}"


def format_loc(loc: Sequence[int | str], skip: frozenset[str] = frozenset()) -> str:
    """``('events', 3, 'nrs')`` -> ``events[3].nrs``; a leading name in ``skip`` (a union's tag) is dropped.

    Only the head: a field may share its name with a tag (an enrollment's ``imaging`` list and
    the ``imaging`` event), and must keep it.
    """
    path = ""
    for index, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
        elif not (index == 0 and part in skip):
            path = join_path(path, part)
    return path


_REF_PATTERN = r"^[A-Za-z0-9._:\-]+$"  # a patient ref (carepath.engine.inputs.PatientRef)
_FRIENDLY = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "int_parsing": "must be an integer",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "date_type": "must be a date (YYYY-MM-DD)",
    "date_parsing": "must be a date (YYYY-MM-DD)",
    "date_from_datetime_parsing": "must be a date (YYYY-MM-DD)",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
}
# Bounds, worded from the error's context (pydantic's own words are "Input should be ...").
_BOUNDS = {
    "greater_than_equal": ("ge", "must be at least {}"),
    "less_than_equal": ("le", "must be at most {}"),
    "greater_than": ("gt", "must be more than {}"),
    "less_than": ("lt", "must be less than {}"),
}


def from_validation_error(exc: ValidationError, prefix: str = "", skip: frozenset[str] = frozenset()) -> InvalidInput:
    return from_error_list(exc.errors(include_url=False), prefix, skip)


def from_error_list(
    details: Sequence[Mapping[str, Any]], prefix: str = "", skip: frozenset[str] = frozenset()
) -> InvalidInput:
    """pydantic-style error dicts (FastAPI's request errors too) as field-named errors."""
    errors = []
    for err in details:
        field = join_path(prefix, format_loc(err["loc"], skip))
        message = _FRIENDLY.get(err["type"], err["msg"])
        if err["type"] == "literal_error":
            message = f"must be one of {err['ctx']['expected']}" if "ctx" in err else err["msg"]
        elif err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            # A discriminated union reports the whole object; the culprit is its tag field.
            tag = err.get("ctx", {}).get("discriminator", "'type'").strip("'")
            field = join_path(field, tag)
            expected = err.get("ctx", {}).get("expected_tags")
            message = f"must be one of {expected}" if expected else "is required"
        elif err["type"] in _BOUNDS and _BOUNDS[err["type"]][0] in err.get("ctx", {}):
            bound, words = _BOUNDS[err["type"]]
            message = words.format(err["ctx"][bound])
        elif err["type"] == "too_short":
            least = err.get("ctx", {}).get("min_length", 1)
            message = "choose at least one" if least == 1 else f"choose at least {least}"
        elif err["type"] == "too_long":
            most = err.get("ctx", {}).get("max_length")
            message = f"must be at most {most} characters long" if most else err["msg"]
        elif err["type"] == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == _REF_PATTERN:
            message = "may hold only letters, digits and . _ : - (no spaces)"
        elif err["type"].startswith("value_error"):
            message = err["msg"].removeprefix("Value error, ")
        errors.append(FieldError(field, message))
    return InvalidInput(errors)
