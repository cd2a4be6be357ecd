"""HL7 v2 over MLLP: what an interface engine is answered, and what reaches the candidates queue.

An ACK with MSA-1 AA is sent only after the message and its candidates are committed; refused
messages get AE/AR with an ERR segment naming the segment and field and are kept for review; the
same MSH-10 again is AA and changes nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime

import pytest
from sqlalchemy.orm import Session

from carepath.intake.mllp import MllpLimits, MllpServer
from db.engine import make_engine
from db.intake import candidates, messages
from db.models import EpisodeRow
from tests.support.hl7_messages import ack_code, adt, err_location, mllp, oru


def _id() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


async def test_reports_positive_negated_duplicate_and_malformed(engine):
    async with MllpServer(engine, "127.0.0.1", 0) as server, mllp(server.bound_port) as client:
        first = await client.send(oru("M-1", "MRN100", "Acute compression fracture of the L1 vertebral body."))
        assert ack_code(first) == "AA" and "MSA|AA|M-1" in first
        (candidate,) = candidates(engine)
        shown = (candidate.patient_ref, candidate.levels, candidate.age, candidate.sex)
        assert shown == ("MRN100", ["L1"], 81, "female")
        assert candidate.sentence == "Acute compression fracture of the L1 vertebral body."
        assert [candidate.sentence[a:b] for a, b in candidate.spans] == ["compression fracture", "L1"]
        assert (candidate.source, candidate.control_id, candidate.reported_on) == ("hl7", "M-1", date(2026, 12, 1))

        negated = await client.send(oru("M-2", "MRN200", "No compression fracture. Vertebral heights are maintained."))
        assert ack_code(negated) == "AA"
        again = await client.send(oru("M-1", "MRN100", "Acute compression fracture of the L1 vertebral body."))
        assert ack_code(again) == "AA" and "MSA|AA|M-1" in again
        assert [c.patient_ref for c in candidates(engine)] == ["MRN100"]  # nothing new from either
        assert len(messages(engine)) == 2  # the resend added no row

        no_patient = await client.send(oru("M-3", "", "Compression fracture of L2."))
        assert ack_code(no_patient) == "AE" and err_location(no_patient) == "PID^1^3"
        assert "PID-3" in no_patient
        garbage = await client.send(b"this is not HL7")
        assert ack_code(garbage) == "AR" and err_location(garbage) == "MSH"
        bad_date = await client.send(oru("M-4", "MRN300", "Compression fracture of L2.", born="1945-03-12"))
        assert ack_code(bad_date) == "AE" and err_location(bad_date) == "PID^1^7"
        kept = {m.control_id: m for m in messages(engine, "refused")}
        assert kept["M-3"].error == "PID-3: missing: the patient identifier"
        assert "Compression fracture of L2." in kept["M-3"].text  # kept as received, for review
        assert kept[None].text == "this is not HL7"
        assert [c.patient_ref for c in candidates(engine)] == ["MRN100"]  # refused messages raise nothing

        # A later report of the same patient and fracture joins the open candidate.
        later = await client.send(oru("M-5", "MRN100", "Stable compression fracture of L1 and T12."))
        assert ack_code(later) == "AA"
        (candidate,) = candidates(engine)
        assert (candidate.messages, candidate.levels, candidate.noted) == (2, ["L1"], ["T12"])


async def test_wrong_encoding_oversized_and_wrong_type_are_refused_and_the_line_goes_on(tmp_path):
    url = f"sqlite:///{tmp_path / 'i.db'}"
    from db.migrate import upgrade

    upgrade(url)
    engine = make_engine(url)
    limits = MllpLimits(max_bytes=8192)
    async with MllpServer(engine, "127.0.0.1", 0, limits) as server, mllp(server.bound_port) as client:
        latin = oru("E-1", "MRN1", "Compression fracture of L2, patient Müller.", charset="UNICODE UTF-8")
        wrong = await client.send(latin.encode("latin-1"))
        assert ack_code(wrong) == "AR" and err_location(wrong) == "MSH^1^18" and "not valid utf-8" in wrong
        declared = await client.send(
            oru("E-2", "MRN1", "Compression fracture of L2, patient Müller.", charset="8859/1").encode("latin-1")
        )
        assert ack_code(declared) == "AA"  # the same bytes, declared as Latin-1: read
        huge = await client.send(oru("E-3", "MRN2", "Compression fracture of L3. " + "x" * 20_000))
        assert ack_code(huge) == "AR" and "limit is 8192" in huge and "MSA|AR|E-3" in huge
        other = await client.send(oru("E-4", "MRN3", "x").replace("ORU^R01^ORU_R01", "ORM^O01^ORM_O01"))
        assert ack_code(other) == "AR" and err_location(other) == "MSH^1^9"
        after = await client.send(oru("E-5", "MRN4", "Wedge compression deformity of L4."))
        assert ack_code(after) == "AA"  # the connection still works after each refusal
    refused = {m.control_id: m for m in messages(engine, "refused")}
    assert set(refused) == {"E-1", "E-3", "E-4"}
    assert refused["E-3"].size == 0 and refused["E-3"].text == ""  # nothing of the oversized one is stored
    assert {c.patient_ref for c in candidates(engine)} == {"MRN1", "MRN4"}
    engine.dispose()


async def test_a_flood_is_answered_in_order_and_stored_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    from db.migrate import upgrade

    upgrade(url)
    engine = make_engine(url)
    limits = MllpLimits(max_connections=3)
    async with MllpServer(engine, "127.0.0.1", 0, limits) as server:
        async with mllp(server.bound_port) as client:
            # 200 messages written without waiting for their ACKs: each answered, in order.
            batch = [oru(f"F-{n}", f"MRN{n % 50}", "Compression fracture of L2.") for n in range(200)]
            for message in batch:
                client.writer.writeblock(message.encode())
            await client.writer.drain()
            acks = [(await asyncio.wait_for(client.reader.readblock(), 60)).decode() for _ in batch]
            assert [a.split("\r")[1] for a in acks] == [f"MSA|AA|F-{n}" for n in range(200)]
        assert len(messages(engine, limit=500)) == 200 and len(candidates(engine)) == 50  # one per patient
        # More senders at once than allowed: the extra one is told to come back; nothing stored.
        port = server.bound_port
        async with mllp(port) as a, mllp(port) as b, mllp(port) as c, mllp(port) as extra:
            await asyncio.gather(*(x.send(oru(f"G-{n}", "MRN900", "x")) for n, x in enumerate((a, b, c))))
            busy = await extra.send(oru("G-9", "MRN901", "Compression fracture of L2."))
            assert ack_code(busy) == "AE" and "busy" in busy
        assert not [m for m in messages(engine, limit=500) if m.control_id == "G-9"]
    engine.dispose()


async def test_admission_of_an_enrolled_patient_is_offered_not_recorded(engine):
    now = datetime.now(UTC)
    episode_id = uuid.uuid4().hex
    with Session(engine) as session, session.begin():
        session.add(
            EpisodeRow(
                id=episode_id,
                patient_ref="MRN-IN-CARE",
                pathway_id="ovcf-lumbar",
                pathway_version=1,
                identified_on=date(2026, 11, 20),
                enrolled_on=date(2026, 11, 21),
                phase="acute",
                status="active",
                simulated=False,
                created_at=now,
                updated_at=now,
            )
        )
    async with MllpServer(engine, "127.0.0.1", 0) as server, mllp(server.bound_port) as client:
        assert ack_code(await client.send(adt(_id(), "MRN-IN-CARE"))) == "AA"
        assert ack_code(await client.send(adt(_id(), "MRN-STRANGER"))) == "AA"  # not enrolled: nothing offered
        assert ack_code(await client.send(adt(_id(), "MRN-IN-CARE", trigger="A08"))) == "AA"  # an update
    (offer,) = candidates(engine)
    assert (offer.kind, offer.episode_id, offer.event) == (
        "event",
        episode_id,
        {"type": "hospital_admission", "occurred_on": "2026-12-03"},
    )
    assert offer.status == "open"  # a coordinator confirms it; nothing was recorded on the episode


async def test_a_patient_update_corrects_what_an_open_candidate_shows(engine):
    async with MllpServer(engine, "127.0.0.1", 0) as server, mllp(server.bound_port) as client:
        assert ack_code(await client.send(oru(_id(), "MRN-UPD", "Compression fracture of L5.", sex="U"))) == "AA"
        assert candidates(engine)[0].sex == "unknown"
        assert ack_code(await client.send(adt(_id(), "MRN-UPD", trigger="A08", sex="M"))) == "AA"
    (candidate,) = candidates(engine)
    assert (candidate.sex, candidate.kind, candidate.status) == ("male", "enrollment", "open")


def test_two_writers_racing_for_one_patient_make_one_candidate(engine):
    """Two listeners (or one listener's two batches) store reports of one new patient at once: the
    open-candidate index lets one raise it, the other joins it on its retry."""
    from concurrent.futures import ThreadPoolExecutor

    from carepath.intake import hl7v2
    from carepath.intake.receive import store

    reports = [hl7v2.parse(oru(f"RACE-{n}", "MRN-RACE", "Compression fracture of L2.").encode()) for n in range(8)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda r: store(engine, [r]), reports))
    assert all(not stored.duplicate for (stored,) in results)
    (candidate,) = candidates(engine)
    assert candidate.messages == 8 and len({stored.candidate_ids[0] for (stored,) in results}) == 1


async def test_when_the_database_cannot_store_it_nothing_is_acknowledged(tmp_path):
    """No tables yet (or the database down): the sender gets no ACK, the line closes, and the same
    message sent again once the database is there is stored and acknowledged."""
    from db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'late.db'}"
    engine = make_engine(url)
    report = oru("LATE-1", "MRN-LATE", "Compression fracture of L3.")
    async with MllpServer(engine, "127.0.0.1", 0) as server:
        async with mllp(server.bound_port) as client:
            with pytest.raises(asyncio.IncompleteReadError):
                await client.send(report)
        upgrade(url)
        async with mllp(server.bound_port) as client:
            assert ack_code(await client.send(report)) == "AA"
    assert [c.patient_ref for c in candidates(engine)] == ["MRN-LATE"]
    engine.dispose()
