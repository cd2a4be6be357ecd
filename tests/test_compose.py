"""docker-compose.yml is accepted by the compose validator and keeps the production rules.

No Docker engine runs here, so the file is validated and rendered (`config`), never started. The
validator is `docker compose` (v2) where installed, else Debian's `docker-compose` 1.29
(`apt-get install -y docker-compose`, what `make compose` installs). The rendered file is read
as JSON from v2 (`config --format json`) or as YAML from v1, parsed with PyYAML: the venv's if it
has one, else the interpreter Debian's docker-compose runs on (python3-yaml is its dependency).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
PASSWORDS = {"TEMPORAL_DB_PASSWORD": "dummy-temporal-pass", "CAREPATH_DB_PASSWORD": "dummy-carepath-pass"}
REQUIRED = [*PASSWORDS, "CAREPATH_KEYS_FILE"]
# Variables the file reads; the caller's values (or a developer's .env) must not leak in.
VARIABLES = set(re.findall(r"\$\{(\w+)", COMPOSE_FILE.read_text()))
INSTALL = "apt-get install -y docker-compose"
ENV_FILE = "env-file"  # the env fixture's empty env file, passed as --env-file
ONE_SHOT = {"temporal-schema", "temporal-namespace", "carepath-migrate"}


@cache
def _validator() -> tuple[str, ...] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return (docker, "compose")
    legacy = shutil.which("docker-compose")
    return (legacy,) if legacy else None


def _require_validator() -> tuple[str, ...]:
    validator = _validator()
    if validator is None:
        message = f"no compose validator (neither `docker compose` nor `docker-compose`): {INSTALL}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return validator


def _is_v2(validator: tuple[str, ...]) -> bool:
    if validator[-1] == "compose":
        return True
    version = subprocess.run([*validator, "version", "--short"], capture_output=True, text=True).stdout
    return version.strip().lstrip("v").startswith("2")


def _config(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`config` with exactly these variables: not the caller's, nor a developer's .env file."""
    validator = _require_validator()
    clean = {k: v for k, v in os.environ.items() if k not in VARIABLES and not k.startswith("COMPOSE_")}
    env = dict(env)
    empty = env.pop(ENV_FILE)  # in place of ./.env: docker-compose 1.29 refuses /dev/null
    return subprocess.run(
        [*validator, "--env-file", empty, "-f", str(COMPOSE_FILE), "config", *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        cwd=ROOT,
        timeout=120,
    )


def _yaml_to_data(text: str, validator: tuple[str, ...]) -> Any:
    try:
        import yaml  # optional: the venv may not have PyYAML
    except ImportError:
        shebang = Path(validator[0]).read_text(errors="replace").splitlines()[0]
        python = shebang.removeprefix("#!").split()[0] if shebang.startswith("#!") else "python3"
        convert = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"
        result = subprocess.run([python, "-c", convert], input=text, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"cannot parse the rendered YAML without PyYAML: {result.stderr}"
        return json.loads(result.stdout)
    return yaml.safe_load(text)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("compose")
    keys = folder / "keys.json"
    keys.write_text(json.dumps({"active": "k1", "keys": {"k1": "AAAA"}}))
    (folder / "empty.env").touch()
    return {**PASSWORDS, "CAREPATH_KEYS_FILE": str(keys), ENV_FILE: str(folder / "empty.env")}


@pytest.fixture(scope="module")
def rendered(env) -> dict[str, Any]:
    validator = _require_validator()
    if _is_v2(validator):
        result = _config(env, "--format", "json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)
    result = _config(env)
    assert result.returncode == 0, result.stderr
    return _yaml_to_data(result.stdout, validator)


def _ports(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, published, target) for each port, long or short syntax."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append((port.get("host_ip", ""), int(port.get("published", 0)), int(port["target"])))
        else:
            parts = str(port).split("/")[0].split(":")
            host = parts[-3] if len(parts) == 3 else ""
            out.append((host, int(parts[-2]) if len(parts) > 1 else 0, int(parts[-1])))
    return out


def _volumes(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(type, source, target) for each mount; an anonymous volume has an empty source."""
    out = []
    for mount in service.get("volumes", []):
        if isinstance(mount, dict):
            out.append((mount.get("type", "volume"), mount.get("source", ""), mount["target"]))
            continue
        parts = str(mount).split(":")
        if len(parts) == 1:
            out.append(("volume", "", parts[0]))
        else:
            kind = "bind" if parts[0].startswith(("/", ".", "~")) else "volume"
            out.append((kind, parts[0], parts[1]))
    return out


def test_compose_file_is_valid(env):
    result = _config(env, "--quiet")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", REQUIRED)
def test_each_secret_is_required(env, missing):
    result = _config({k: v for k, v in env.items() if k != missing}, "--quiet")
    assert result.returncode != 0
    assert missing in result.stderr


def test_topology(rendered):
    services = rendered["services"]
    assert {
        "temporal-db",
        "temporal-schema",
        "temporal",
        "temporal-namespace",
        "temporal-ui",
        "carepath-db",
        "carepath-migrate",
        "carepath-worker",
        "carepath-api",
        "carepath-intake",
    } <= set(services)
    for name in ("temporal-db", "carepath-db"):
        assert services[name]["image"].startswith("postgres:")
        assert "pg_isready" in " ".join(services[name]["healthcheck"]["test"])
    assert services["temporal"]["image"].startswith("temporalio/server:")
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")
    # Worker and API run the image built from the Dockerfile; the API serves on 8000.
    for name in ("carepath-migrate", "carepath-worker", "carepath-api", "carepath-intake"):
        assert "build" in services[name]
    assert services["carepath-worker"]["command"] == ["carepath", "worker"]
    assert services["carepath-api"]["command"][:2] == ["carepath", "api"]
    assert services["carepath-intake"]["command"] == ["carepath", "intake", "--host", "0.0.0.0", "--port", "2575"]
    assert services["carepath-intake"]["environment"]["CAREPATH_DATABASE_URL"].startswith("postgresql://")


def test_published_ports(rendered):
    services = rendered["services"]
    assert any(published == 8000 and target == 8000 for _, published, target in _ports(services["carepath-api"]))
    # The Temporal UI has no login: loopback unless TEMPORAL_UI_BIND says otherwise.
    assert _ports(services["temporal-ui"]) == [("127.0.0.1", 8080, 8080)]
    # MLLP has no login or encryption either: loopback unless CAREPATH_MLLP_BIND says otherwise.
    assert _ports(services["carepath-intake"]) == [("127.0.0.1", 2575, 2575)]
    # Databases and the Temporal frontend stay on the compose network.
    for name in ("temporal-db", "carepath-db", "temporal"):
        assert not _ports(services[name]), name


def test_named_volumes_only(rendered):
    declared = set(rendered.get("volumes") or {})
    for name, service in rendered["services"].items():
        for kind, source, target in _volumes(service):
            assert source, f"{name}: anonymous volume at {target} (lost when the container is recreated)"
            if kind == "volume":
                assert source in declared, f"{name}: volume {source} is not declared"
    for name in ("temporal-db", "carepath-db"):
        assert ("volume", name, "/var/lib/postgresql/data") in _volumes(rendered["services"][name])


def test_startup_order(rendered):
    services = rendered["services"]

    def condition(name: str, dependency: str) -> str:
        return services[name]["depends_on"][dependency]["condition"]

    assert condition("temporal-schema", "temporal-db") == "service_healthy"
    assert condition("temporal", "temporal-schema") == "service_completed_successfully"
    assert condition("carepath-migrate", "carepath-db") == "service_healthy"
    assert condition("carepath-intake", "carepath-migrate") == "service_completed_successfully"
    for name in ("carepath-worker", "carepath-api"):
        assert condition(name, "carepath-migrate") == "service_completed_successfully"
        assert condition(name, "temporal-namespace") == "service_completed_successfully"
    migrate = " ".join(services["carepath-migrate"]["command"])
    assert "from db.migrate import upgrade" in migrate and "CAREPATH_DATABASE_URL" in migrate


def test_restart_policies_and_pinned_images(rendered):
    for name, service in rendered["services"].items():
        restart = service.get("restart", "no")
        if name in ONE_SHOT:
            assert restart.startswith("on-failure"), name
        else:
            assert restart in {"always", "unless-stopped"}, name
        if "build" not in service:
            tag = service["image"].rpartition(":")[2]
            assert ":" in service["image"] and tag not in {"", "latest"}, f"{name}: pin the image tag"


def test_passwords_come_from_the_environment(rendered):
    source = COMPOSE_FILE.read_text()
    secrets = [line.strip() for line in source.splitlines() if "PASSWORD" in line or "_PWD" in line]
    assert secrets
    for line in secrets:
        if line.startswith("#"):
            continue
        assert "${TEMPORAL_DB_PASSWORD:?" in line or "${CAREPATH_DB_PASSWORD:?" in line, line
    env = rendered["services"]["carepath-worker"]["environment"]
    assert env["CAREPATH_DATABASE_URL"] == "postgresql://carepath:dummy-carepath-pass@carepath-db:5432/carepath"
    assert env["CAREPATH_KEY_FILE"] == "/run/secrets/carepath_keys"
    assert rendered["services"]["temporal"]["environment"]["POSTGRES_PWD"] == "dummy-temporal-pass"


def test_image_runs_the_worker_as_a_non_root_user():
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    assert next(line for line in lines if line.startswith("FROM ")) == "FROM python:3.11-slim"
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert any(line.startswith("RUN pip install") for line in lines)
    assert [line for line in lines if line.startswith("CMD ")][-1] == 'CMD ["carepath", "worker"]'
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "tests", "*.db", "**/__pycache__", ".env"} <= ignored
