"""docker-compose.yml is accepted by the compose validator and keeps production rules.

No Docker engine runs here, so the file is validated (`docker compose config`, or Debian's
`docker-compose` 1.29 where the plugin is missing) rather than started.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECRETS = {"TEMPORAL_DB_PASSWORD": "t-pass", "CAREPATH_DB_PASSWORD": "c-pass"}


def _validator() -> list[str]:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    message = "no compose validator: apt-get install -y docker-compose"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _config(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS and k != "CAREPATH_KEYS_FILE"}
    return subprocess.run(
        [*_validator(), "-f", str(ROOT / "docker-compose.yml"), "config", *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        cwd=ROOT,
        timeout=60,
    )


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"active": "k1", "keys": {"k1": "AAAA"}}))
    return {**SECRETS, "CAREPATH_KEYS_FILE": str(keys)}


def test_compose_file_is_valid(env):
    result = _config(env, "-q")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", [*SECRETS, "CAREPATH_KEYS_FILE"])
def test_each_secret_is_required(env, missing):
    result = _config({k: v for k, v in env.items() if k != missing}, "-q")
    assert result.returncode != 0
    assert missing in result.stderr


def test_topology_and_production_rules(env):
    rendered = _config(env).stdout
    services = {
        line.strip().rstrip(":")
        for line in rendered.splitlines()
        if line.startswith("  ") and not line.startswith("   ") and line.strip().endswith(":")
    }
    expected = {
        "temporal",
        "temporal-db",
        "temporal-schema",
        "temporal-namespace",
        "temporal-ui",
        "carepath-db",
        "carepath-migrate",
        "carepath-worker",
        "carepath-api",
    }
    assert expected <= services
    assert "published: 8000" in rendered or "8000:8000" in rendered
    source = (ROOT / "docker-compose.yml").read_text()
    # Named volumes only: an anonymous one ("- /var/lib/postgresql/data") would lose data on recreate.
    assert "      - /var/lib" not in source
    assert "t-pass" in rendered and "POSTGRES_PASSWORD: temporal\n" not in source
    assert "CAREPATH_KEY_FILE: /run/secrets/carepath_keys" in source
