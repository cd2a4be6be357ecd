"""FHIR R4 resources in: DiagnosticReport, Condition, and a Bundle of them with their Patients.

Validated with the ``fhir.resources`` R4B models. The patient is ``subject.identifier``, or the
Patient that ``subject.reference`` points at (contained ``#id``, or a bundle entry by ``fullUrl``
or ``Patient/id``), which must carry an identifier. Every error names its field by the resource's
own path (``entry[1].resource.subject``); a Bundle is read whole before anything is stored.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.patient import Patient as FhirPatient
from pydantic import ValidationError

from carepath.engine.intake import Coding
from carepath.errors import FieldError, InvalidInput, format_loc
from carepath.intake.message import Patient, Received

REPORTS = ("DiagnosticReport", "Condition")
TAKEN = ("Patient", *REPORTS)
BUNDLE_TYPES = ("transaction", "batch", "collection")
NOT_A_FINDING = ("refuted", "entered-in-error")  # Condition.verificationStatus


def _validated(model: type[Any], data: dict[str, Any], prefix: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors()[:10]:
            loc = format_loc([part for part in err["loc"] if part != "resource_type"]) or "resourceType"
            errors.append(FieldError(_join(prefix, loc), err["msg"].split("\n")[0].strip()))
        raise InvalidInput(errors) from None


def _join(prefix: str, field: str) -> str:
    return f"{prefix}.{field}" if prefix else field


def _canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def _dedupe_key(kind: str, resource: Any, data: dict[str, Any]) -> str:
    """The same resource sent again (same identifier, else same id, else same content) keys alike."""
    for identifier in resource.identifier or []:
        if identifier.value:
            return f"fhir:{kind}:{identifier.system or ''}|{identifier.value}"
    if resource.id:
        return f"fhir:{kind}/{resource.id}"
    return f"fhir:{kind}:sha256:{hashlib.sha256(_canonical(data)).hexdigest()}"


def _day(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else None


def _from_patient(resource: FhirPatient, field: str) -> Patient:
    identifier = next((i for i in resource.identifier or [] if i.value), None)
    if identifier is None:
        raise InvalidInput.one(field, "the Patient has no identifier (its value is the patient's ref)")
    return Patient(
        ref=identifier.value, system=identifier.system or "", birth_date=_day(resource.birthDate), sex=resource.gender
    )


def _subject(resource: Any, patients: dict[str, Patient], prefix: str) -> Patient:
    field = _join(prefix, "subject")
    subject = resource.subject
    if subject is None:
        raise InvalidInput.one(field, "missing: the patient (subject.identifier or a reference to a Patient)")
    contained = {f"#{c.id}": c for c in resource.contained or [] if c.get_resource_type() == "Patient" and c.id}
    referenced = None
    if subject.reference:
        if subject.reference in contained:
            referenced = _from_patient(contained[subject.reference], f"{prefix}.contained" if prefix else "contained")
        else:
            referenced = patients.get(subject.reference)
    if subject.identifier is not None and subject.identifier.value:
        found = Patient(ref=subject.identifier.value, system=subject.identifier.system or "")
        if referenced is not None and referenced.ref == found.ref:
            return referenced
        return found
    if referenced is None:
        raise InvalidInput.one(
            field, "must give subject.identifier, or reference a contained or bundled Patient that has an identifier"
        )
    return referenced


def _codings(concept: Any) -> list[Coding]:
    return [
        Coding(c.system or "", c.code, c.display or "") for c in (concept.coding or [] if concept else []) if c.code
    ]


def _concept_text(concept: Any) -> str:
    if concept is None:
        return ""
    return " ".join([concept.text or "", *(c.display or "" for c in concept.coding or [])]).strip()


def _received(resource: Any, data: dict[str, Any], patients: dict[str, Patient], prefix: str, **read: Any) -> Received:
    """The resource as the intake takes it: its key, its body as received, its patient, and ``read``."""
    kind = resource.get_resource_type()
    return Received(
        source="fhir",
        kind=kind,
        dedupe_key=_dedupe_key(kind, resource, data),
        body=_canonical(data),
        control_id=resource.id,
        patient=_subject(resource, patients, prefix),
        **read,
    )


def _report(data: dict[str, Any], patients: dict[str, Patient], prefix: str) -> Received:
    report = _validated(DiagnosticReport, data, prefix)
    texts = [_concept_text(report.code), report.conclusion or ""]
    for form in report.presentedForm or []:
        if form.data and (form.contentType or "").startswith("text/"):
            texts.append(
                form.data.decode("utf-8", errors="replace") if isinstance(form.data, bytes) else str(form.data)
            )
    codings = [c for concept in report.conclusionCode or [] for c in _codings(concept)]
    modality = next((c.code for concept in report.category or [] for c in _codings(concept)), None)
    reported = report.effectiveDateTime or (report.effectivePeriod.start if report.effectivePeriod else None)
    return _received(
        report,
        data,
        patients,
        prefix,
        text="\n".join(t for t in texts if t),
        codings=codings,
        reported_on=_day(reported) or _day(report.issued),
        modality=modality,
    )


def _condition(data: dict[str, Any], patients: dict[str, Patient], prefix: str) -> Received:
    condition = _validated(Condition, data, prefix)
    verification = {c.code for c in _codings(condition.verificationStatus)}
    denied = bool(verification & set(NOT_A_FINDING))  # a refuted diagnosis names nothing
    sites = " ".join(_concept_text(site) for site in condition.bodySite or [])
    return _received(
        condition,
        data,
        patients,
        prefix,
        codings=[] if denied else _codings(condition.code),
        coding_text=f"{(condition.code.text or '') if condition.code else ''} {sites}".strip(),
        reported_on=_day(condition.onsetDateTime) or _day(condition.recordedDate),
    )


def _kind(data: Any, field: str) -> str:
    if not isinstance(data, dict):
        raise InvalidInput.one(field or "body", "must be a FHIR resource (a JSON object with resourceType)")
    kind = data.get("resourceType")
    if not isinstance(kind, str) or not kind:
        raise InvalidInput.one(_join(field, "resourceType"), "missing: the resource's type")
    return kind


def read(data: Any, expected: str | None = None) -> list[Received]:
    """The reports in ``data`` (a resource ``expected`` is, or a Bundle), each ready to store."""
    kind = _kind(data, "")
    if expected is not None and kind != expected:
        raise InvalidInput.one("resourceType", f"must be {expected} at this address, not {kind}")
    if kind == "Bundle":
        return _bundle(data)
    if kind not in REPORTS:
        raise InvalidInput.one("resourceType", f"{kind} is not taken (DiagnosticReport, Condition, or a Bundle)")
    return [(_report if kind == "DiagnosticReport" else _condition)(data, {}, "")]


def _bundle(data: dict[str, Any]) -> list[Received]:
    entries = data.get("entry")
    _validated(Bundle, {**data, "entry": []}, "")  # the envelope; each entry is validated below
    if data.get("type") not in BUNDLE_TYPES:
        raise InvalidInput.one("type", f"must be one of {', '.join(BUNDLE_TYPES)}")
    if not isinstance(entries, list) or not entries:
        raise InvalidInput.one("entry", "missing: the Bundle has no entries")
    resources: list[tuple[str, str, dict[str, Any]]] = []
    patients: dict[str, Patient] = {}
    for n, entry in enumerate(entries):
        field = f"entry[{n}].resource"
        resource = entry.get("resource") if isinstance(entry, dict) else None
        kind = _kind(resource, field)
        if kind not in TAKEN:
            raise InvalidInput.one(f"{field}.resourceType", f"{kind} is not taken in a Bundle ({', '.join(TAKEN)})")
        if kind == "Patient":
            patient = _from_patient(_validated(FhirPatient, resource, field), field)
            for key in (entry.get("fullUrl"), f"Patient/{resource.get('id')}" if resource.get("id") else None):
                if key:
                    patients[key] = patient
        else:
            resources.append((field, kind, resource))
    if not resources:
        raise InvalidInput.one("entry", "the Bundle has no DiagnosticReport or Condition")
    return [(_report if kind == "DiagnosticReport" else _condition)(r, patients, f) for f, kind, r in resources]
