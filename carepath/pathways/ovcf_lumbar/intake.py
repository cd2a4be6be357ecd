"""How ovcf-lumbar's patients are found in radiology reports and coded diagnoses.

The rules, in words (docs/intake.md has them with examples):

- A report is split into sentences (full stop, ! or ? followed by a space, or a line break) and each
  sentence into clauses at ``;``, ``:`` and the words but, however, although, though, except,
  whereas, while.
- A clause names a **fracture** when it has a compression / wedge / burst / insufficiency /
  osteoporotic / fragility / pathologic(al) fracture (or "deformity", or "fx"; up to three words
  may stand between, as in "wedge-shaped compression fracture"), "vertebral (body) fracture",
  "VCF", or "fracture of (the) L1..L5 / lumbar / thoracolumbar".
- It is **negated** when a negation stands before the fracture word in the same clause (no, not,
  without, negative for, free of, absence of, neither, nor, rule out, r/o, exclude, evaluate or
  assess for: a question is not a finding), or when "excluded", "ruled out", "not seen /
  identified / present / demonstrated / evident / visualized / appreciated / detected" or "absent"
  follows it. "cannot be excluded", "not excluded", "cannot be ruled out" are uncertainty, not
  negation; "no change in", "no interval change", "no progression of" speak of a fracture that is
  there.
- **Levels** are L1-L5 and T1-T12 written L2, L 2, L-2, or ranges L2-L4, L2-4, T12-L2 (each level of
  the range), and "first..fifth lumbar vertebra". A range written with "/" (L4/5) or followed by
  "disc", "interspace", "foramen" or "foraminal" is a disc level, not a vertebra. L1-L5 are the
  pathway's levels; T12 (the thoracolumbar junction) is noted beside them.
- A clause is a **candidate** when it names a fracture, is not negated, and names a lumbar level,
  or the word lumbar or thoracolumbar. A fracture sentence with no level at all takes the lumbar
  levels of the sentence before it ("Height loss of L2. This is a compression fracture."), and
  counts when the report names the lumbar spine anywhere (the study's title). Thoracic-only
  fractures (T1-T12 and no lumbar level) are not candidates.
- **Codes**: SNOMED CT 42942008 (compression fracture of vertebral column) and 443165006
  (pathological fracture due to osteoporosis); ICD-10 S32.0* (fracture of lumbar vertebra, S32.01-
  S32.05 naming L1-L5), M48.50/M48.55/M48.56/M48.57 (collapsed vertebra: unspecified,
  thoracolumbar, lumbar, lumbosacral), M80.08 and M80.88 (osteoporosis with current pathological
  fracture, vertebra). A coding's text (body site, code text) may add levels; a coded finding whose
  text names thoracic levels only is not a candidate.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from carepath.engine.intake import Coding, Finding, ReportFacts

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_CLAUSE = re.compile(r";|:|\b(?:but|however|although|though|except|whereas|while)\b", re.IGNORECASE)
_TYPES = r"(?:compression|wedge|burst|insufficiency|osteoporotic|fragility|pathologic(?:al)?)"
_FRACTURE = re.compile(
    rf"\b{_TYPES}(?:[\s-]+[a-z]+){{0,3}}?[\s-]+(?:fractures?|fx|deformit(?:y|ies))\b"
    r"|\bvertebral(?:\s+body)?\s+fractures?\b"
    r"|\bVCFs?\b"
    r"|\bfractures?\s+(?:of|at|involving)\s+(?:the\s+)?(?:L\s?-?[1-5]\b|lumbar\b|thoracolumbar\b)",
    re.IGNORECASE,
)
_PRE_NEGATION = re.compile(
    r"\b(?:no|not|without|negative\s+for|free\s+of|absence\s+of|neither|nor|rule\s+out|r/o|exclude|excluding"
    r"|evaluat(?:e|ion)\s+for|assess(?:ment)?\s+for|to\s+assess)\b",
    re.IGNORECASE,
)
_PSEUDO_NEGATION = re.compile(
    r"\bno\s+(?:significant\s+|interval\s+|further\s+)?(?:change|progression|increase)\b|\bnot\s+only\b",
    re.IGNORECASE,
)
_POST_NEGATION = re.compile(
    r"^(?:(?!\b(?:cannot|can't|can\s+not|not)\s+be\b).)*?"
    r"\b(?:excluded|ruled\s+out|absent|not\s+(?:seen|identified|present|demonstrated|evident|visuali[sz]ed"
    r"|appreciated|detected))\b",
    re.IGNORECASE,
)
_UNCERTAIN = re.compile(r"\b(?:cannot|can't|can\s+not|not)\s+be\s+(?:excluded|ruled\s+out)\b|\bnot\s+excluded\b", re.I)
_LUMBAR_WORD = re.compile(r"\b(?:thoraco-?)?lumbar\b", re.IGNORECASE)
_LEVEL = re.compile(
    r"\b([LT])\s?-?(\d{1,2})(?:\s*(?:-|\u2013|to|through)\s*([LT])?\s?(\d{1,2}))?\b(?!\s*/)(\s*(?:disc|interspace|foram))?",
    re.IGNORECASE,
)
_MRI_SIGNAL = re.compile(r"[\s-]*(?:weighted|signal|hyper|hypo|intens|sequence|stir|images?)\b", re.IGNORECASE)
_DISC_SLASH = re.compile(r"\b[LT]\s?\d{1,2}\s*/\s*[LTS]?\d", re.IGNORECASE)
_ORDINAL = re.compile(r"\b(first|second|third|fourth|fifth)\s+lumbar\s+vertebra", re.IGNORECASE)
_ORDINALS = {"first": "L1", "second": "L2", "third": "L3", "fourth": "L4", "fifth": "L5"}
SPINE = [*(f"T{n}" for n in range(1, 13)), *(f"L{n}" for n in range(1, 6))]
LUMBAR = frozenset(f"L{n}" for n in range(1, 6))
NOTED = frozenset({"T12"})

SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
SNOMED_CODES = {
    "42942008": "Compression fracture of vertebral column",
    "443165006": "Pathological fracture due to osteoporosis",
}
# ICD-10 codes without their dot, matched as prefixes (S320 is S32.0 and all below it).
ICD10_PREFIXES = {
    "S320": "Fracture of lumbar vertebra",
    "M4850": "Collapsed vertebra, site unspecified",
    "M4855": "Collapsed vertebra, thoracolumbar region",
    "M4856": "Collapsed vertebra, lumbar region",
    "M4857": "Collapsed vertebra, lumbosacral region",
    "M8008": "Age-related osteoporosis with current pathological fracture, vertebra",
    "M8088": "Other osteoporosis with current pathological fracture, vertebra",
}
_SYSTEMS = {
    "snomed": (SNOMED, "sct", "snm", "snomed", "snomed-ct", "snomedct", "2.16.840.1.113883.6.96"),
    "icd10": (ICD10, "http://hl7.org/fhir/sid/icd-10-cm", "i10", "i10c", "icd10", "icd-10", "icd10cm", "icd-10-cm"),
}
# What the message calls the study (OBR-24 diagnostic service, FHIR category/code) -> our modality.
MODALITIES = {"ct": "ct", "mr": "mri", "mri": "mri", "cr": "xray", "dx": "xray", "xr": "xray", "rad": "xray"}


def _levels_in(text: str) -> list[tuple[str, int, int]]:
    """(level, start, end) for each vertebra ``text`` names, ranges expanded, disc levels left out."""
    found: list[tuple[str, int, int]] = []
    slashes = [m.span() for m in _DISC_SLASH.finditer(text)]
    for match in _LEVEL.finditer(text):
        if match.group(5) or any(a <= match.start() < b for a, b in slashes):
            continue
        if not match.group(4) and _MRI_SIGNAL.match(text, match.end()):
            continue  # "T2 hyperintense": an MRI sequence, not a vertebra
        first = f"{match.group(1).upper()}{int(match.group(2))}"
        if first not in SPINE:
            continue
        last = first
        if match.group(4):
            last = f"{(match.group(3) or match.group(1)).upper()}{int(match.group(4))}"
            if last not in SPINE or SPINE.index(last) < SPINE.index(first):
                last = first
        for level in SPINE[SPINE.index(first) : SPINE.index(last) + 1]:
            found.append((level, match.start(), match.end()))
    for match in _ORDINAL.finditer(text):
        found.append((_ORDINALS[match.group(1).lower()], match.start(), match.end()))
    return found


def _clauses(sentence: str) -> list[tuple[int, str]]:
    """(offset, text) of each clause of ``sentence``."""
    out, start = [], 0
    for cut in _CLAUSE.finditer(sentence):
        out.append((start, sentence[start : cut.start()]))
        start = cut.end()
    out.append((start, sentence[start:]))
    return out


def _negated(clause: str, match: re.Match[str]) -> bool:
    before = _PSEUDO_NEGATION.sub(" ", clause[: match.end()])
    # Negation words inside the phrase count too ("compression without fracture").
    if _PRE_NEGATION.search(before):
        return True
    after = clause[match.end() :]
    return bool(_POST_NEGATION.search(after)) and not _UNCERTAIN.search(after)


def _ordered(levels: set[str]) -> tuple[str, ...]:
    return tuple(sorted(levels, key=SPINE.index))


def _fracture_clauses(sentence: str) -> list[tuple[int, str, re.Match[str]]]:
    """The clauses of ``sentence`` that name a fracture, not negated: (offset, clause, first match)."""
    found = []
    for offset, clause in _clauses(sentence):
        matches = [m for m in _FRACTURE.finditer(clause) if not _negated(clause, m)]
        if matches:
            found.append((offset, clause, matches[0]))
    return found


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def _finding(sentence: str, inherited: set[str], lumbar_report: bool) -> Finding | None:
    """The finding in ``sentence``, if it is a candidate (see the module's rules)."""
    levels: set[str] = set()
    lumbar_words = False
    spans: list[tuple[int, int]] = []
    for offset, clause, match in _fracture_clauses(sentence):
        spans.append((offset + match.start(), offset + match.end()))
        for level, start, end in _levels_in(clause):
            levels.add(level)
            spans.append((offset + start, offset + end))
        lumbar_words = lumbar_words or bool(_LUMBAR_WORD.search(clause))
    if not spans:
        return None
    if not levels and not lumbar_words:
        if not (inherited or lumbar_report):
            return None
        levels = set(inherited)
    if levels and not levels & LUMBAR and not lumbar_words:
        return None  # a thoracic fracture: not this pathway's
    return Finding(
        sentence=sentence,
        levels=_ordered(levels & LUMBAR),
        noted=_ordered(levels & NOTED),
        spans=tuple(sorted(set(spans))),
    )


class OvcfIntake:
    """ovcf-lumbar's intake detector (the rules are the module's docstring)."""

    def find_in_text(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        lumbar_report = bool(re.search(r"\blumbar\s+spine\b|\bL-?spine\b", text, re.IGNORECASE))
        previous: set[str] = set()
        for sentence in sentences(text):
            finding = _finding(sentence, previous, lumbar_report)
            if finding is not None:
                found.append(finding)
            previous = {level for level, _, _ in _levels_in(sentence)} & LUMBAR
        return found

    def find_in_codes(self, codings: list[Coding], text: str = "") -> list[Finding]:
        found: list[Finding] = []
        named = {level for level, _, _ in _levels_in(text)}
        for coding in codings:
            label = _coded(coding)
            if label is None:
                continue
            levels = set(named)
            code = coding.code.replace(".", "").upper()
            if code.startswith("S320") and code[4:5] in "12345" and code[4:5]:
                levels.add(f"L{code[4]}")
            lumbar_code = code.startswith(("S320", "M4856", "M4855", "M4857"))
            if levels and not levels & LUMBAR and not lumbar_code:
                continue  # coded, but at thoracic levels only
            sentence = coding.display or label
            if text:
                sentence = f"{sentence} ({text})"
            found.append(
                Finding(
                    sentence=sentence,
                    levels=_ordered(levels & LUMBAR),
                    noted=_ordered(levels & NOTED),
                    spans=((0, len(coding.display or label)),),
                    code=f"{coding.system}|{coding.code}",
                )
            )
        return found

    def enrollment_draft(self, facts: ReportFacts) -> dict[str, Any]:
        patient: dict[str, Any] = {"ref": facts.patient_ref}
        if facts.age is not None:
            patient["age"] = facts.age
        if facts.sex is not None:
            patient["sex"] = facts.sex
        draft: dict[str, Any] = {"patient": patient}
        if facts.reported_on is not None:
            draft["identified_on"] = facts.reported_on.isoformat()
        levels = [level for level in facts.levels if level in LUMBAR]
        if levels:
            draft["fracture"] = {"levels": levels}
        modality = MODALITIES.get((facts.modality or "").strip().lower())
        if modality and facts.reported_on is not None:
            draft["imaging"] = [{"performed_on": facts.reported_on.isoformat(), "modality": modality}]
        return draft

    def admission_event(self, admitted_on: date) -> dict[str, Any] | None:
        return {"type": "hospital_admission", "occurred_on": admitted_on.isoformat()}


def _coded(coding: Coding) -> str | None:
    """The label of ``coding`` when it is one of the pathway's codes."""
    system = coding.system.strip().lower()
    code = coding.code.strip().replace(".", "").upper()
    if system in _SYSTEMS["snomed"]:
        return SNOMED_CODES.get(code)
    if system in _SYSTEMS["icd10"]:
        return next((label for prefix, label in ICD10_PREFIXES.items() if code.startswith(prefix)), None)
    return None


OVCF_INTAKE = OvcfIntake()
