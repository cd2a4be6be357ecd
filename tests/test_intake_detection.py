"""ovcf-lumbar's report detector against a labelled set of report sentences: precision and recall.

Each sentence is labelled by what a spine coordinator wants: ``POSITIVE`` (a lumbar or
thoracolumbar vertebral compression fracture is reported; the expected lumbar levels), ``NEGATED``
(the fracture is named and denied), ``NEGATIVE`` (something else, or another level). The target is
recall 1.0 and no negated sentence ever a candidate; precision is measured and printed.
"""

from __future__ import annotations

from datetime import date

from carepath.engine.intake import Coding, ReportFacts
from carepath.pathways.ovcf_lumbar.intake import OVCF_INTAKE

POSITIVE: list[tuple[str, tuple[str, ...]]] = [
    ("Acute compression fracture of the L1 vertebral body.", ("L1",)),
    ("There is a mild wedge compression deformity of L2 with 20% anterior height loss.", ("L2",)),
    ("Burst fracture of L3 with 4 mm retropulsion.", ("L3",)),
    ("Insufficiency fracture at L4.", ("L4",)),
    ("Osteoporotic compression fractures of L2 and L3.", ("L2", "L3")),
    ("Compression fractures L1-L3, new since the prior study.", ("L1", "L2", "L3")),
    ("Compression fractures involving L2-4.", ("L2", "L3", "L4")),
    ("Wedge-shaped compression fracture of T12 and L1.", ("L1",)),
    ("Thoracolumbar junction compression fracture.", ()),
    ("Known chronic L5 compression fracture, unchanged.", ("L5",)),
    ("No interval change in the L2 compression fracture.", ("L2",)),
    ("A compression fracture of L2 cannot be excluded.", ("L2",)),
    ("Findings suspicious for a pathologic fracture of L3.", ("L3",)),
    ("L4 vertebral body fracture with marrow edema on STIR images.", ("L4",)),
    ("T2 hyperintense marrow edema within the L1 compression fracture, consistent with an acute injury.", ("L1",)),
    ("No fracture at L3, but there is a wedge fracture at L1.", ("L1",)),
    ("Fracture of the L2 vertebra with 30 % loss of height.", ("L2",)),
    ("Lumbar compression fracture, level not specified on this portable film.", ()),
    ("Fragility fracture of the first lumbar vertebra.", ("L1",)),
    ("Severe compression deformity of L 3.", ("L3",)),
    ("Impression: new osteoporotic VCF at L-2.", ("L2",)),
    ("Mild compression fracture of L1; no retropulsion.", ("L1",)),
    ("Compression fracture of L4 with disc protrusion at L4-L5 disc.", ("L4",)),
    ("Stable burst fracture of L2, no canal compromise.", ("L2",)),
]

NEGATED = [
    "No compression fracture.",
    "No evidence of compression fracture of the lumbar spine.",
    "Vertebral body heights are maintained without fracture or compression deformity at L1-L5.",
    "Compression fracture at L2 is excluded.",
    "An L3 compression fracture is ruled out.",
    "Negative for acute compression fracture of L1.",
    "There is no wedge or burst fracture of the lumbar vertebrae.",
    "No new compression fracture at L4.",
    "L2 compression fracture is not seen on this study.",
    "Free of any compression fracture of the lumbar spine.",
    "Neither a burst fracture nor a compression fracture of L1 is present.",
    "Clinical question: rule out L1 compression fracture.",
    "Evaluate for lumbar compression fracture.",
    "No acute osteoporotic compression fracture of L5 identified.",
]

NEGATIVE = [
    "Compression fracture of T8.",
    "Chronic wedge compression deformities of T6 and T7.",
    "Mild degenerative disc disease at L4-L5.",
    "Disc bulge at L4/5 with mild foraminal narrowing.",
    "Fracture of the distal radius.",
    "Spinal canal stenosis at L3-L4 with cord compression.",
    "Normal lumbar lordosis.",
    "Mild facet arthropathy at L5-S1.",
    "Status post kyphoplasty.",
    "Osteopenia of the lumbar spine.",
    "Rib fracture on the left.",
    "Compression fracture of T12.",
]


def _candidate(sentence: str) -> tuple[bool, tuple[str, ...]]:
    found = OVCF_INTAKE.find_in_text(sentence)
    return bool(found), tuple(level for f in found for level in f.levels)


def test_labelled_report_sentences_precision_and_recall():
    assert len(POSITIVE) + len(NEGATED) + len(NEGATIVE) >= 40
    true_positives = sum(_candidate(s)[0] for s, _ in POSITIVE)
    false_positives = sum(_candidate(s)[0] for s in NEGATED + NEGATIVE)
    recall = true_positives / len(POSITIVE)
    precision = true_positives / (true_positives + false_positives)
    print(
        f"\nintake detector on {len(POSITIVE) + len(NEGATED) + len(NEGATIVE)} sentences: "
        f"precision {precision:.2f}, recall {recall:.2f} "
        f"({true_positives} of {len(POSITIVE)} found, {false_positives} false)"
    )
    missed = [s for s, _ in POSITIVE if not _candidate(s)[0]]
    assert missed == [] and recall == 1.0
    negated = [s for s in NEGATED if _candidate(s)[0]]
    assert negated == [], "a negated sentence became a candidate"
    assert precision >= 0.9


def test_levels_are_the_reported_vertebrae():
    wrong = [(s, _candidate(s)[1], levels) for s, levels in POSITIVE if _candidate(s)[1] != levels]
    assert wrong == []


def test_t12_is_noted_and_the_matched_words_are_spanned():
    (finding,) = OVCF_INTAKE.find_in_text("Wedge-shaped compression fracture of T12 and L1.")
    assert finding.levels == ("L1",) and finding.noted == ("T12",)
    marked = [finding.sentence[a:b] for a, b in finding.spans]
    assert "Wedge-shaped compression fracture" in marked and "L1" in marked and "T12" in marked


def test_a_report_keeps_only_its_positive_sentences():
    report = (
        "EXAM: XR LUMBAR SPINE 2 VIEWS.\nFINDINGS: There is loss of height of the L2 vertebral body. "
        "This represents a compression fracture. No other fracture. Disc spaces are preserved.\n"
        "IMPRESSION: Compression fracture, as above."
    )
    found = OVCF_INTAKE.find_in_text(report)
    assert [f.sentence for f in found] == [
        "This represents a compression fracture.",
        "IMPRESSION: Compression fracture, as above.",
    ]
    assert found[0].levels == ("L2",)  # from the sentence before it


def test_codes():
    codes = [
        Coding("http://snomed.info/sct", "42942008", "Compression fracture of vertebral column"),
        Coding("http://hl7.org/fhir/sid/icd-10-cm", "S32.020A", "Wedge compression fracture of second lumbar vertebra"),
        Coding("I10", "M80.08XA"),
        Coding("http://snomed.info/sct", "22298006", "Myocardial infarction"),
    ]
    found = OVCF_INTAKE.find_in_codes(codes)
    assert [f.code.rsplit("|", 1)[1] for f in found] == ["42942008", "S32.020A", "M80.08XA"]
    assert found[1].levels == ("L2",)
    assert OVCF_INTAKE.find_in_codes(codes[:1], text="T8") == []  # thoracic only
    assert OVCF_INTAKE.find_in_codes(codes[:1], text="L3 vertebra")[0].levels == ("L3",)


def test_the_draft_holds_only_what_the_message_gave():
    draft = OVCF_INTAKE.enrollment_draft(
        ReportFacts(
            patient_ref="MRN1", age=None, sex="female", reported_on=date(2026, 12, 1), modality="CT", levels=("L2",)
        )
    )
    assert draft == {
        "patient": {"ref": "MRN1", "sex": "female"},
        "identified_on": "2026-12-01",
        "fracture": {"levels": ["L2"]},
        "imaging": [{"performed_on": "2026-12-01", "modality": "ct"}],
    }
    assert "pain_nrs" not in draft and "analgesics" not in draft
