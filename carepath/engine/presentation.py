"""What the edges (pages, API, FHIR export, follow-up) show of a pathway, as plain data.

A pathway declares these through the ``Pathway`` protocol (``carepath.engine.pathway``); the edges
render them without knowing which pathway they come from. Everything here is pure: no I/O.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from datetime import date
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

FieldKind = Literal["date", "number", "choice", "choices", "flag", "text", "longtext"]


class Choice(BaseModel):
    """One value a person may pick, and the words they read for it."""

    value: str
    label: str


class FormField(BaseModel):
    """One input of an event form, in the order the form shows it.

    ``kind``: ``date``, ``number`` (``minimum``..``maximum``), ``choice`` (one of ``choices``),
    ``choices`` (any of them), ``flag`` (yes or no), ``text`` (one line) or ``longtext``.
    ``required``: the event is refused without it. No field carries a default answer: a value the
    person did not give is absent.
    """

    name: str
    label: str
    kind: FieldKind
    required: bool = False
    choices: list[Choice] = Field(default_factory=list)
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None
    hint: str = ""
    scale: bool = False  # a choice shown as a row of numbered buttons with its anchors' words (0-10)


class EventForm(BaseModel):
    """The form for one event type: ``type`` is the event's own ``type``; ``title`` in words.
    ``physicians_only``: only a physician may record it (the API checks too)."""

    type: str
    title: str
    fields: list[FormField]
    physicians_only: bool = False

    def field(self, name: str) -> FormField | None:
        return next((f for f in self.fields if f.name == name), None)

    def values(self, get: Callable[[str], str | None], get_all: Callable[[str], list[str]]) -> dict[str, Any]:
        """The event as the API takes it, from a posted form: lists from multi-selects, flags as
        booleans (only when answered), numbers as numbers, empty inputs absent."""
        data: dict[str, Any] = {"type": self.type}
        for spec in self.fields:
            if spec.kind == "choices":
                data[spec.name] = [v for v in get_all(spec.name) if v]
                continue
            value = (get(spec.name) or "").strip()
            if value == "":
                continue
            if spec.kind == "flag":
                data[spec.name] = {"yes": True, "no": False}.get(value, value)
            elif spec.kind == "number":
                data[spec.name] = int(value) if value.lstrip("-").isdigit() else value
            else:
                data[spec.name] = value
        return data


class Fact(BaseModel):
    """One line of an episode's header or row: ``label`` and ``value`` in words."""

    label: str
    value: str


class DuePoint(BaseModel):
    """Something coming up for an episode, for display. ``what`` is the clock's own name for it
    (``milestone``, ...); ``day`` counts from day 0; ``ref`` names which one (a milestone, a date)."""

    on: date
    day: int
    what: str
    ref: str
    title: str


class Mark(BaseModel):
    """A pathway-specific marker on the year picture: ``kind`` ``given`` (it happened) or
    ``expected`` (it is due), at ``day``, with its words."""

    day: int
    kind: Literal["given", "expected"]
    label: str


class RecordedEvent(BaseModel):
    """An event as the store holds it, as the pathway's display hooks read it."""

    id: str
    type: str
    occurred_on: date
    day: int
    payload: dict[str, Any]


class CheckIn(BaseModel):
    """A patient check-in that a raised item triggers (the pathway's follow-up).

    The check-in link opens a page asking ``questions``; its answer becomes the event
    ``answer(...)`` builds. It expires ``expires_after_days`` after the item was raised and
    reminds the patient once after ``remind_after_days`` without an answer. The message texts
    are the patient's words (no codes).
    """

    closes: str  # the code of the item the answer closes (its task)
    expires_after_days: int
    remind_after_days: int
    title: str  # the page's heading, e.g. "How is your back pain?"
    intro: str
    subject: str
    reminder_subject: str
    opening: str
    reminder_opening: str
    safety: str  # what to do at once if things get worse (shown on the page and in messages)
    questions: list[FormField]


def summary_line(payload: dict[str, Any], names: list[str] | tuple[str, ...]) -> str:
    """``payload``'s ``names`` in one line ("nrs: 5; analgesics: nsaid"), empty ones left out."""
    parts = []
    for name in names:
        value = payload.get(name)
        if value is None or value == []:
            continue
        if isinstance(value, list):
            value = ", ".join(map(str, value))
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        parts.append(f"{name.replace('_', ' ')}: {value}")
    return "; ".join(parts)


def words(code: str) -> str:
    """A code in words when nothing better is known: ``bed_rest`` -> ``Bed rest``."""
    text = code.replace("_", " ").replace("->", " to ").strip()
    return text[:1].upper() + text[1:] if text else text


def _inner(annotation: Any) -> tuple[Any, bool]:
    """The annotation without ``None`` and ``Annotated``, and whether ``None`` was allowed."""
    optional = False
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        optional = len(args) < len(get_args(annotation))
        annotation = args[0] if len(args) == 1 else annotation
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation, optional


def _kind(annotation: Any, info: FieldInfo) -> tuple[FieldKind, list[str]]:
    """The form kind of a model field, and its closed vocabulary (a ``Literal``'s values)."""
    annotation, _ = _inner(annotation)
    origin = get_origin(annotation)
    if origin is Literal:
        return "choice", [str(v) for v in get_args(annotation)]
    if origin is list:
        (item,) = get_args(annotation) or (str,)
        item, _ = _inner(item)
        return "choices", [str(v) for v in get_args(item)] if get_origin(item) is Literal else []
    if annotation is bool:
        return "flag", []
    if annotation is int:
        return "number", []
    if annotation is date:
        return "date", []
    longest = next((m.max_length for m in info.metadata if getattr(m, "max_length", None)), None)
    return ("longtext" if longest and longest > 200 else "text"), []


def _bounds(info: FieldInfo) -> tuple[int | None, int | None, int | None]:
    lo = hi = length = None
    for meta in info.metadata:
        lo = getattr(meta, "ge", lo)
        hi = getattr(meta, "le", hi)
        length = getattr(meta, "max_length", length)
        bounds = getattr(getattr(meta, "func", None), "bounds", None)  # engine.inputs.between(lo, hi)
        if bounds is not None:
            lo, hi = bounds
    return lo, hi, length


def _field(
    name: str, info: FieldInfo, label: str, given: list[Choice] | None, value_label: Callable[[str], str]
) -> FormField:
    kind, values = _kind(info.annotation, info)
    if given is not None and kind not in ("choice", "choices"):
        kind = "choice"
    lo, hi, length = _bounds(info)
    return FormField(
        name=name,
        label=label,
        kind=kind,
        required=info.is_required(),
        choices=given if given is not None else [Choice(value=v, label=value_label(v)) for v in values],
        minimum=lo,
        maximum=hi,
        max_length=length,
    )


def form_fields(
    model: type[BaseModel],
    labels: Mapping[str, str],
    choices: Mapping[str, list[Choice]] | None = None,
    value_label: Callable[[str], str] = words,
    skip: tuple[str, ...] = ("type",),
) -> list[FormField]:
    """An input model's fields as form fields, in the model's order.

    ``labels`` names each field in words (a field without one gets its name in words);
    ``choices`` gives the vocabulary of fields the model leaves open (e.g. agents from the
    definition); a ``Literal`` field's values are labelled by ``value_label``.
    """
    given = choices or {}
    return [
        _field(name, info, labels.get(name, words(name)), given.get(name), value_label)
        for name, info in model.model_fields.items()
        if name not in skip
    ]


class FormSection(BaseModel):
    """A group of an enrollment form's fields under a heading. ``rows`` > 0: a repeated group
    (e.g. imaging studies), its fields named with ``[]`` for the row (``imaging[].modality``)."""

    title: str
    fields: list[FormField]
    rows: int = 0

    def expanded(self) -> list[list[FormField]]:
        """The fields as the page shows them: one list per row, names with their row number."""
        if not self.rows:
            return [self.fields]
        return [
            [f.model_copy(update={"name": f.name.replace("[]", f"[{i}]"), "required": False}) for f in self.fields]
            for i in range(self.rows)
        ]


def _sub_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field nests (itself, or as the item of a list), and whether it is a list."""
    annotation, _ = _inner(annotation)
    listed = get_origin(annotation) is list
    if listed:
        (annotation,) = get_args(annotation) or (Any,)
    is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return (annotation if is_model else None), listed


def model_fields_flat(
    model: type[BaseModel],
    labels: Mapping[str, str],
    choices: Mapping[str, list[Choice]],
    value_label: Callable[[str], str] = words,
    prefix: str = "",
    required: bool = True,
) -> list[FormField]:
    """Every leaf field of ``model`` with its dotted name (``patient.ref``; ``imaging[].modality``
    inside a list of models). Required only if it and every model around it are required."""
    found: list[FormField] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        sub, listed = _sub_model(info.annotation)
        if sub is not None:
            inner = f"{path}[]." if listed else f"{path}."
            found += model_fields_flat(
                sub, labels, choices, value_label, inner, required and info.is_required() and not listed
            )
            continue
        leaf = _field(path, info, labels.get(path, words(name)), choices.get(path), value_label)
        found.append(leaf.model_copy(update={"required": leaf.required and required}))
    return found


def layout(fields: list[FormField], sections: list[tuple[str, list[str], int]]) -> list[FormSection]:
    """``fields`` grouped as ``sections`` say: (heading, dotted names in order, rows)."""
    by_name = {f.name: f for f in fields}
    return [FormSection(title=title, fields=[by_name[n] for n in names], rows=rows) for title, names, rows in sections]


def _put(data: dict[str, Any], path: str, value: Any) -> None:
    head, _, rest = path.partition(".")
    if rest:
        _put(data.setdefault(head, {}), rest, value)
    else:
        data[head] = value


def _get(data: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _prune(data: dict[str, Any], keep: set[str], prefix: str = "") -> dict[str, Any]:
    """Optional groups nobody filled in are absent (an optional part left blank was not given);
    a required one stays, so that its errors name its fields (``patient.ref``, not ``patient``)."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            value = _prune(value, keep, f"{prefix}{key}.")
            if not value and f"{prefix}{key}" not in keep:
                continue
        out[key] = value
    return out


def sections_values(
    sections: list[FormSection], get: Callable[[str], str | None], get_all: Callable[[str], list[str]]
) -> dict[str, Any]:
    """What a posted sectioned form says, as the nested data its model takes (empty inputs absent)."""
    data: dict[str, Any] = {}
    keep: set[str] = set()
    for section in sections:
        rows = section.expanded()
        for spec in rows[0] if not section.rows and any(f.required for f in rows[0]) else ():
            groups = spec.name.split(".")[:-1]
            if spec.required and groups:
                keep |= {".".join(groups[: i + 1]) for i in range(len(groups))}
        if not section.rows:
            flat = EventForm(type="", title="", fields=rows[0]).values(get, get_all)
            for spec in rows[0]:
                if spec.name in flat:
                    _put(data, spec.name, flat[spec.name])
            continue
        listed: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            flat = EventForm(type="", title="", fields=row).values(get, get_all)
            filled = {k.split("].", 1)[1]: v for k, v in flat.items() if k != "type" and v not in ([], "")}
            if filled:
                group = section.fields[0].name.split("[]", 1)[0]
                listed.setdefault(group, []).append(filled)
        for group, items in listed.items():
            _put(data, group, items)
    for group in sorted(keep):
        _put(data, group, _get(data, group) or {})
    return _prune(data, keep)
