"""Payload encryption: nothing about a patient is readable in Temporal's history without the keys."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.worker import Replayer

from carepath.codec import EncryptionCodec, KeyRing, KeyRingError, encrypted_converter
from carepath.pathways.ovcf_lumbar.inputs import ClinicianNote, Enrollment, parse_model
from carepath.service import CarepathService
from carepath.temporal import DATA_CONVERTER
from db.engine import make_engine
from db.migrate import upgrade
from tests.support.live import start_dev_server
from tests.support.temporal import TASK_QUEUE, MemorySink
from worker import build_worker
from workflows.contracts import workflow_id
from workflows.episode import EpisodeWorkflow

SECRET_REF = "zz-ref-4417"
SECRET_TEXT = "lives alone above the bakery on Quill Street"


def plain_history_leaks_nothing(raw: bytes) -> bool:
    secrets = (SECRET_REF, SECRET_TEXT, "Dr Quill", '"age":93')
    return not any(secret.encode() in raw for secret in secrets)


@pytest.fixture(scope="module")
async def dev_env():
    env = await start_dev_server()
    yield env
    await env.shutdown()


async def test_round_trip_and_rotation_keep_old_histories_readable():
    old = KeyRing.generate("k1")
    sealed = EncryptionCodec(old).encrypt(Payload(metadata={"encoding": b"json/plain"}, data=b'{"age": 93}'))
    assert b"93" not in sealed.data and sealed.metadata["encryption-key-id"] == b"k1"
    rotated = old.rotated("k2")
    codec = EncryptionCodec(rotated)
    assert codec.decrypt(sealed).data == b'{"age": 93}'
    assert codec.encrypt(Payload(data=b"x")).metadata["encryption-key-id"] == b"k2"
    without_k1 = EncryptionCodec(KeyRing(active="k2", keys={"k2": rotated.keys["k2"]}))
    with pytest.raises(KeyRingError, match="unknown key id 'k1'"):
        without_k1.decrypt(sealed)
    assert KeyRing.from_json(rotated.to_json()) == rotated
    with pytest.raises(KeyRingError):
        KeyRing.from_env_value("k1:not-base64!!")


async def test_raw_history_holds_no_patient_data(dev_env, tmp_path):
    ring = KeyRing.generate("k1")
    converter = encrypted_converter(DATA_CONVERTER, ring)
    client = Client(dev_env.client.service_client, namespace=dev_env.client.namespace, data_converter=converter)
    url = f"sqlite:///{tmp_path / 'enc.db'}"
    upgrade(url)
    engine = make_engine(url)
    service = CarepathService(client, engine, TASK_QUEUE)
    enrollment = parse_model(
        Enrollment,
        {
            "identified_on": date.today().isoformat(),
            "patient": {"ref": SECRET_REF, "age": 93, "sex": "female"},
            "fracture": {"levels": ["L4"]},
            "pain_nrs": 7,
        },
    )
    # The worker and the service both talk through the encrypting client.
    with ThreadPoolExecutor(4) as threads:
        async with build_worker(client, engine, TASK_QUEUE, threads, MemorySink(), 100, 4):
            enrolled = await service.enroll(enrollment, "coordinator:test")
            note = ClinicianNote(occurred_on=date.today(), text=SECRET_TEXT, author="Dr Quill")
            await service.record_event(enrolled.episode_id, note, "coordinator:test")
            handle = client.get_workflow_handle(workflow_id(enrolled.episode_id))
            assert (await handle.query(EpisodeWorkflow.view)).phase == "acute"
            history = await handle.fetch_history()
    engine.dispose()

    # What anyone with access to the Temporal server sees: the history's raw bytes.
    raw = await dev_env.client.get_workflow_handle(workflow_id(enrolled.episode_id)).fetch_history()
    raw_bytes = b"".join(event.SerializeToString() for event in raw.events)
    assert plain_history_leaks_nothing(raw_bytes)
    assert b"binary/encrypted" in raw_bytes
    assert SECRET_REF not in workflow_id(enrolled.episode_id)

    replayer = Replayer(workflows=[EpisodeWorkflow], data_converter=converter)
    assert (await replayer.replay_workflow(history, raise_on_replay_failure=False)).replay_failure is None
