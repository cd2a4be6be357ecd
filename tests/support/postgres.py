"""A throwaway PostgreSQL server for the test suite (Debian's ``postgresql`` package).

``running_postgres`` runs ``initdb`` and ``pg_ctl`` from the newest /usr/lib/postgresql/*/bin
in a directory of its own, on a free port of 127.0.0.1, and stops the server afterwards. It
never touches the cluster that the Debian package may have started on port 5432.

initdb refuses to run as root, so as root every server command runs as the ``postgres`` system
user (``runuser -u postgres --``) and the directory is handed to that user. The directory must
therefore be reachable by it: use one under /tmp (``tempfile.TemporaryDirectory``), not
pytest's ``tmp_path``, whose ancestors are private to root.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

POSTGRES_ROOT = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"
DATABASE = "carepath_test"
START_TIMEOUT = 60  # seconds
START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it


def find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin that has initdb and pg_ctl."""
    candidates = [
        path / "bin"
        for path in POSTGRES_ROOT.glob("*")
        if (path / "bin" / "initdb").is_file() and (path / "bin" / "pg_ctl").is_file()
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda bin_dir: _version_key(bin_dir.parent.name))


def postgres_available() -> bool:
    """Whether ``running_postgres`` can start a server on this machine."""
    if find_bin_dir() is None:
        return False
    if os.geteuid() != 0:
        return True
    return _server_user() is not None and shutil.which("runuser") is not None


@contextmanager
def running_postgres(base_dir: Path, reuse: bool = False) -> Iterator[str]:
    """Start a server with its data, socket and log in ``base_dir``; yield the URL of a database.

    The URL is ``postgresql+psycopg://postgres@127.0.0.1:PORT/carepath_test`` (trust auth).
    ``reuse``: a server already made in ``base_dir`` is started again with its data (a benchmark
    keeps its filled store between runs).
    """
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError(f"no PostgreSQL under {POSTGRES_ROOT}: apt-get install -y postgresql")
    base_dir = base_dir.resolve()
    base_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        _hand_over(base_dir)
    data_dir, log_file = base_dir / "data", base_dir / "postgres.log"
    if reuse and (data_dir / "PG_VERSION").exists():
        try:
            port = _start(bin_dir, data_dir, log_file)
            yield f"postgresql+psycopg://{SERVER_USER}@127.0.0.1:{port}/{DATABASE}"
        finally:
            _stop(bin_dir, data_dir, base_dir)
        return
    _run(
        bin_dir / "initdb",
        "--pgdata",
        data_dir,
        "--username",
        SERVER_USER,
        "--auth",
        "trust",
        "--encoding",
        "UTF8",
        "--no-locale",
        "--no-sync",
        cwd=base_dir,
    )
    try:
        port = _start(bin_dir, data_dir, log_file)
        url = f"postgresql+psycopg://{SERVER_USER}@127.0.0.1:{port}/{DATABASE}"
        with psycopg.connect(_conninfo(url, dbname="postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        yield url
    finally:
        _stop(bin_dir, data_dir, base_dir)


class PostgresServer:
    """A test server that can be stopped and started again on the same port (outage tests)."""

    def __init__(self, bin_dir: Path, base_dir: Path, port: int, url: str) -> None:
        self.bin_dir, self.base_dir, self.port, self.url = bin_dir, base_dir, port, url

    def stop(self) -> None:
        _stop(self.bin_dir, self.base_dir / "data", self.base_dir)

    def start(self) -> None:
        _start(self.bin_dir, self.base_dir / "data", self.base_dir / "postgres.log", fixed_port=self.port)


@contextmanager
def controllable_postgres(base_dir: Path) -> Iterator[PostgresServer]:
    with running_postgres(base_dir) as url:
        port = make_url(url).port
        assert port is not None
        bin_dir = find_bin_dir()
        assert bin_dir is not None
        yield PostgresServer(bin_dir, base_dir.resolve(), port, url)


@contextmanager
def temporary_database(server_url: str) -> Iterator[str]:
    """Create a database with a unique name beside ``server_url``'s; yield its URL; drop it."""
    name = f"carepath_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(_conninfo(server_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_conninfo(server_url), autocommit=True) as conn:
            # FORCE ends connections that a test's engine pool still holds.
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# ---- helpers ----------------------------------------------------------------------------------


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (-1,)


def _server_user() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        return None


def _hand_over(base_dir: Path) -> None:
    user = _server_user()
    if user is None:
        raise RuntimeError(f"running as root and there is no {SERVER_USER!r} user to run PostgreSQL as")
    os.chown(base_dir, user.pw_uid, user.pw_gid)
    reachable = subprocess.run(
        ["runuser", "-u", SERVER_USER, "--", "test", "-w", str(base_dir), "-a", "-x", str(base_dir)],
        check=False,
    )
    if reachable.returncode != 0:
        raise RuntimeError(
            f"the {SERVER_USER!r} user cannot reach {base_dir}; put the server in a directory under /tmp"
        )


def _run(*args: object, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a server command, as the ``postgres`` user when we are root."""
    command = [str(arg) for arg in args]
    if os.geteuid() == 0:
        command = ["runuser", "-u", SERVER_USER, "--", *command]
    result = subprocess.run(command, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(bin_dir: Path, data_dir: Path, log_file: Path, fixed_port: int | None = None) -> int:
    """Start the server on a free port (or ``fixed_port``) and return the port."""
    for attempt in range(1, START_ATTEMPTS + 1):
        port = fixed_port or _free_port()
        options = " ".join(
            [
                f"-c port={port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={shlex.quote(str(data_dir.parent))}",
                # A test server: durability is not wanted, speed is.
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
            ]
        )
        result = _run(
            bin_dir / "pg_ctl",
            "start",
            "--pgdata",
            data_dir,
            "--log",
            log_file,
            "--wait",
            "--timeout",
            START_TIMEOUT,
            "-o",
            options,
            cwd=data_dir.parent,
            check=False,
        )
        if result.returncode == 0:
            return port
        log = log_file.read_text(errors="replace") if log_file.exists() else ""
        if attempt < START_ATTEMPTS and "could not bind" in log:
            continue
        raise RuntimeError(
            f"pg_ctl start failed ({result.returncode}):\n{result.stdout}{result.stderr}\n"
            f"--- {log_file} ---\n{log[-4000:]}"
        )
    raise AssertionError("unreachable")


def _stop(bin_dir: Path, data_dir: Path, cwd: Path) -> None:
    if not (data_dir / "postmaster.pid").exists():
        return
    result = _run(bin_dir / "pg_ctl", "stop", "--pgdata", data_dir, "--mode", "fast", "--wait", cwd=cwd, check=False)
    if result.returncode != 0:
        with suppress(Exception):
            _run(bin_dir / "pg_ctl", "stop", "--pgdata", data_dir, "--mode", "immediate", cwd=cwd, check=False)


def _conninfo(url: str, dbname: str | None = None) -> str:
    """A libpq URI for psycopg from a SQLAlchemy URL (optionally of another database)."""
    parsed = make_url(url).set(drivername="postgresql")
    if dbname is not None:
        parsed = parsed.set(database=dbname)
    return parsed.render_as_string(hide_password=False)
