"""Notification sinks: the JSON-lines file and the HMAC-signed webhook (a real local receiver)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from activities.notifications import DELIVERY_HEADER, SIGNATURE_HEADER, FileSink, WebhookSink, sign

MESSAGE = {
    "delivery_id": "ep1:PAIN_REASSESSMENT@week4",
    "episode_id": "ep1",
    "code": "PAIN_REASSESSMENT",
    "occasion": "week4",
    "recipient_role": "coordinator",
    "subject": "[routine] Reassess pain",
    "body": "Record a pain assessment.",
    "created_at": "2026-01-01T09:00:00+00:00",
}


class Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []
    answer = 204

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((dict(self.headers), body))
        self.send_response(Receiver.answer)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.received = []
    Receiver.answer = 204
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def test_webhook_posts_a_body_the_receiver_can_verify(receiver):
    WebhookSink(receiver, "s3cret").deliver(MESSAGE)
    headers, body = Receiver.received[0]
    assert json.loads(body) == MESSAGE
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
    assert headers[DELIVERY_HEADER] == MESSAGE["delivery_id"]
    assert sign("other", body) != headers[SIGNATURE_HEADER]


def test_webhook_failure_raises_so_the_activity_retries(receiver):
    Receiver.answer = 503
    with pytest.raises(RuntimeError, match="webhook"):
        WebhookSink(receiver, "s3cret").deliver(MESSAGE)
    with pytest.raises(RuntimeError, match="webhook delivery failed"):
        WebhookSink("http://127.0.0.1:9/nothing-listens", "s3cret", timeout=2).deliver(MESSAGE)


def test_webhook_needs_a_secret():
    with pytest.raises(ValueError, match="CAREPATH_WEBHOOK_SECRET"):
        WebhookSink("http://127.0.0.1:9/hook", "")


def test_file_sink_appends_one_json_line_per_notification(tmp_path):
    sink = FileSink(tmp_path / "out" / "notifications.jsonl")
    sink.deliver(MESSAGE)
    sink.deliver(MESSAGE | {"delivery_id": "other"})
    lines = (tmp_path / "out" / "notifications.jsonl").read_text().splitlines()
    assert [json.loads(line)["delivery_id"] for line in lines] == [MESSAGE["delivery_id"], "other"]
