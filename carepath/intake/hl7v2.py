"""HL7 v2 messages in (ORU^R01 reports, ADT^A01/A04/A08) and their acknowledgements out.

Parsing is the ``hl7`` package's; this module decides what a message means for the intake and
why one is refused, naming the segment and field (``PID-3``) in the ACK's ERR segment.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, date, datetime

import hl7

from carepath.engine.intake import Coding
from carepath.intake.message import Patient, Received, Refusal

ACCEPTED_TYPES = {("ORU", "R01"), ("ADT", "A01"), ("ADT", "A04"), ("ADT", "A08")}
# MSH-18 character sets we read (HL7 table 0211); none given: UTF-8, which ASCII is part of.
CHARSETS = {
    "": "utf-8",
    "ascii": "ascii",
    "unicode utf-8": "utf-8",
    "utf-8": "utf-8",
    "8859/1": "latin-1",
    "8859/15": "iso8859-15",
}
SEX = {"F": "female", "M": "male", "O": "other", "A": "other", "U": "unknown", "N": "unknown"}
TEXT_TYPES = {"TX", "FT", "ST"}
CODED_TYPES = {"CE", "CWE", "CNE"}
_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})")


def refused_key(body: bytes) -> str:
    """A refused message keys by its content: the same bad bytes again add no second row."""
    return f"refused:sha256:{hashlib.sha256(body).hexdigest()}"


def _refused(
    body: bytes, refusal: Refusal, kind: str = "", control_id: str | None = None, sender: str = ""
) -> Received:
    return Received(
        source="hl7",
        kind=kind or "unknown",
        dedupe_key=refused_key(body),
        body=body,
        control_id=control_id,
        sender=sender,
        refusal=refusal,
    )


def _unread(body: bytes, refusal: Refusal) -> Received:
    """A refusal before the message could be parsed: who sent it and its id, as far as its header says."""
    fields = _header_fields(body)

    def msh(n: int) -> str:
        return fields[n - 1].strip() if 0 < n - 1 < len(fields) else ""

    component = msh(2)[:1] or "^"
    kind = "^".join(msh(9).split(component)[:2]) if msh(9) else ""
    sender = "^".join(part for part in (msh(3), msh(4)) if part)
    return _refused(body, refusal, kind[:40], msh(10)[:200] or None, sender[:200])


def _charset(body: bytes) -> str | Refusal:
    """MSH-18 read from the raw bytes (the header is ASCII whatever the charset)."""
    if not body.startswith(b"MSH") or len(body) < 8:
        return Refusal("the message does not start with an MSH segment", "MSH", None, "AR", "100")
    separator = body[3:4]
    header = body.split(b"\r", 1)[0].split(b"\n", 1)[0]
    fields = header.split(separator)
    declared = fields[17].split(b"~")[0].decode("ascii", "replace").strip().lower() if len(fields) > 17 else ""
    if declared not in CHARSETS:
        return Refusal(f"character set {declared!r} is not one we read (UNICODE UTF-8, 8859/1, ASCII)", "MSH", 18, "AR")
    return CHARSETS[declared]


def _get(message: hl7.Message, path: str) -> str:
    try:
        return str(message[path]).strip()
    except (KeyError, IndexError):
        return ""


def _date(value: str, segment: str, field: int) -> date | Refusal | None:
    if not value:
        return None
    match = _DATE.match(value)
    try:
        if match is None:
            raise ValueError
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return Refusal(f"{value!r} is not a date (YYYYMMDD)", segment, field, "AE", "102")


def parse(body: bytes) -> Received:
    """The message ``body`` (one MLLP frame) read, or refused with the segment and field named."""
    charset = _charset(body)
    if isinstance(charset, Refusal):
        return _unread(body, charset)
    try:
        text = body.decode(charset)
    except UnicodeDecodeError as exc:
        where = f"byte 0x{body[exc.start]:02x} at position {exc.start}"
        return _unread(body, Refusal(f"the message is not valid {charset} ({where})", "MSH", 18, "AR", "102"))
    text = text.replace("\r\n", "\r").replace("\n", "\r").strip("\r")
    try:
        message = hl7.parse(text)
        message.segment("MSH")
    except Exception as exc:  # the library's parse errors have no common base
        return _unread(body, Refusal(f"the message cannot be parsed ({type(exc).__name__})", "MSH", None, "AR", "100"))
    return _read(body, message)


def _read(body: bytes, message: hl7.Message) -> Received:
    kind = (_get(message, "MSH.F9.R1.C1"), _get(message, "MSH.F9.R1.C2"))
    label = "^".join(part for part in kind if part)
    control_id = _get(message, "MSH.F10")[:200] or None
    sender = "^".join(part for part in (_get(message, "MSH.F3"), _get(message, "MSH.F4")) if part)[:200]
    if control_id is None:
        return _refused(body, Refusal("missing: the message control id", "MSH", 10, "AR", "101"), label, None, sender)
    if kind not in ACCEPTED_TYPES:
        types = ", ".join(sorted(f"{a}^{b}" for a, b in ACCEPTED_TYPES))
        refusal = Refusal(f"message type {label or 'missing'} is not accepted ({types})", "MSH", 9, "AR", "200")
        return _refused(body, refusal, label, control_id, sender)
    patient = _patient(message)
    if isinstance(patient, Refusal):
        return _refused(body, patient, label, control_id, sender)
    received = Received(
        source="hl7",
        kind=label,
        dedupe_key=f"hl7:{sender}:{control_id}",
        body=body,
        control_id=control_id,
        sender=sender,
        patient=patient,
    )
    problem = _report(message, received) if kind[0] == "ORU" else _admission(message, received, kind[1])
    if problem is not None:
        return _refused(body, problem, label, control_id, sender)
    return received


def _patient(message: hl7.Message) -> Patient | Refusal:
    try:
        message.segment("PID")
    except KeyError:
        return Refusal("missing: the patient identification segment", "PID", None, "AE", "100")
    ref = message.unescape(_get(message, "PID.F3.R1.C1"))
    if not ref:
        return Refusal("missing: the patient identifier", "PID", 3, "AE", "101")
    born = _date(_get(message, "PID.F7"), "PID", 7)
    if isinstance(born, Refusal):
        return born
    sex_code = _get(message, "PID.F8").upper()
    if sex_code and sex_code not in SEX:
        return Refusal(f"{sex_code!r} is not a sex code (F, M, O, U, A, N)", "PID", 8, "AE", "103")
    return Patient(ref=ref, system=_get(message, "PID.F3.R1.C4"), birth_date=born, sex=SEX.get(sex_code))


def _report(message: hl7.Message, received: Received) -> Refusal | None:
    """ORU^R01: the study's title, date and kind (OBR) and its findings (OBX text and codes)."""
    observed = _date(_get(message, "OBR.F7"), "OBR", 7)
    if isinstance(observed, Refusal):
        return observed
    received.reported_on = observed or _date_or_none(_get(message, "MSH.F7"))
    received.modality = _get(message, "OBR.F24") or None
    lines = [message.unescape(_get(message, "OBR.F4.R1.C2"))]
    try:
        observations = message.segments("OBX")
    except KeyError:
        observations = []
    for obx in observations:
        value_type = str(obx(2)).strip().upper()
        if value_type in TEXT_TYPES:
            lines += [message.unescape(str(rep)).replace("\\.br\\", "\n") for rep in obx(5)]
        elif value_type in CODED_TYPES:
            for rep in obx(5):
                code, display, system = (str(rep(1)(n)).strip() if len(rep(1)) >= n else "" for n in (1, 2, 3))
                if code:
                    received.codings.append(Coding(system, code, display))
    received.text = "\n".join(line for line in lines if line)
    return None


def _date_or_none(value: str) -> date | None:
    parsed = _date(value, "", 0)
    return parsed if isinstance(parsed, date) else None


def _admission(message: hl7.Message, received: Received, trigger: str) -> Refusal | None:
    """ADT: A01 is an admission (PV1-44, else EVN-6, EVN-2, MSH-7); A04 and A08 update the patient."""
    if trigger != "A01":
        return None
    for path, segment, field in (("PV1.F44", "PV1", 44), ("EVN.F6", "EVN", 6), ("EVN.F2", "EVN", 2)):
        admitted = _date(_get(message, path), segment, field)
        if isinstance(admitted, Refusal):
            return admitted
        if admitted is not None:
            received.admitted_on = admitted
            return None
    received.admitted_on = _date_or_none(_get(message, "MSH.F7"))
    if received.admitted_on is None:
        return Refusal("missing: the admission date", "PV1", 44, "AE", "101")
    return None


# ---- acknowledgements -------------------------------------------------------------------------


def _escape(text: str) -> str:
    """Our words inside an HL7 field: the delimiters escaped (HL7 2.7 section 2.7)."""
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("&", "\\T\\")
    return out.replace("~", "\\R\\").replace("\r", " ").replace("\n", " ")


def _header_fields(body: bytes) -> list[str]:
    """MSH fields of ``body`` as far as they can be read (for a message we could not parse too)."""
    header = body.split(b"\r", 1)[0].split(b"\n", 1)[0][:2000].decode("ascii", "replace")
    if not header.startswith("MSH") or len(header) < 4:
        return []
    return ["MSH", *header[4:].split(header[3])]  # [0]=MSH, [1]=MSH-2 (encoding characters), ...


def ack(body: bytes, code: str, refusal: Refusal | None = None, now: datetime | None = None) -> bytes:
    """The ACK for ``body``: MSA-1 ``code`` (AA, AE, AR), MSA-2 its control id, ERR naming where."""
    fields = _header_fields(body)

    def msh(n: int) -> str:  # MSH-n of the incoming message as it was encoded ('' if absent)
        value = fields[n - 1] if 0 < n - 1 < len(fields) else ""
        return value.replace("|", "").replace("\r", "")[:200]

    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
    component = msh(2)[:1] or "^"
    trigger = msh(9).split(component)[1] if component in msh(9) else ""
    control = msh(10)
    segments = [
        f"MSH|^~\\&|CAREPATH|CAREPATH|{msh(3)}|{msh(4)}|{stamp}||ACK^{_escape(trigger)}^ACK|{uuid.uuid4().hex[:20]}"
        f"|{msh(11) or 'P'}|{msh(12) or '2.5.1'}",
        f"MSA|{code}|{control}" + (f"|{_escape(str(refusal))[:80]}" if refusal else ""),
    ]
    if refusal is not None:
        where = f"{refusal.segment}^1^{refusal.field}" if refusal.field is not None else refusal.segment
        segments.append(
            f"ERR||{where}|{refusal.hl7_code}^{_escape(refusal.message)[:200]}^HL70357|E||||{_escape(str(refusal))}"
        )
    return ("\r".join(segments) + "\r").encode("ascii", "replace")
