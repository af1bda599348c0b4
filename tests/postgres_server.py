"""A throwaway PostgreSQL cluster for the tests: initdb in a temporary folder, a server on a free loopback port,
stopped at the end. Debian's package provides the binaries (`.ci/run` installs it); where none can be started the
tests that need it skip with the reason, except under CI, where a skip would hide them and so fails instead."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "sipa"
PASSWORD = "sipa-test"


def _binary(name: str) -> str | None:
    """Debian keeps the server binaries out of PATH, under /usr/lib/postgresql/<major>/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresUnavailable(RuntimeError):
    """No server can be started here; the message says why."""


def unavailable(reason: str):
    """Skip with the reason; under CI (which always installs PostgreSQL) fail instead."""
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required under CI: {reason}")
    pytest.skip(f"no PostgreSQL server can be started here: {reason}")


@dataclass
class PostgresServer:
    port: int
    data_dir: Path
    _as_user: list[str]
    _pg_ctl: str

    def url(self, database: str, driver: str = "psycopg", password: str = PASSWORD) -> str:
        return f"postgresql+{driver}://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def new_database(self, driver: str = "psycopg") -> str:
        """A fresh, empty database on the server; returns its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url("postgres", "psycopg").replace("postgresql+psycopg", "postgresql"),
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name, driver)

    def stop(self) -> None:
        subprocess.run(self._as_user + [self._pg_ctl, "-D", str(self.data_dir), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)


def start_postgres(root: Path, durable: bool = False) -> PostgresServer:
    """initdb + pg_ctl start on 127.0.0.1:<free port>; password authentication for USER over TCP. Raises
    PostgresUnavailable where no server can be started (bench/bench_storage.py starts its own through this too).
    `durable`: commits reach the disk (fsync on), as on a real server; tests skip that."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not (initdb and pg_ctl):
        raise PostgresUnavailable("initdb/pg_ctl not found (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise PostgresUnavailable("the psycopg package is not installed")
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as Debian's postgres user
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("running as root and there is no 'postgres' user to run the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
    root.mkdir(parents=True, exist_ok=True)
    data_dir, pwfile = root / "data", root / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    if as_user:
        shutil.chown(root, "postgres")
        shutil.chown(pwfile, "postgres")
    init = subprocess.run(as_user + [initdb, "-D", str(data_dir), "-U", USER, "--pwfile", str(pwfile),
                                     "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8",
                                     "--no-sync"], capture_output=True, text=True, timeout=120)
    if init.returncode != 0:
        raise PostgresUnavailable(f"initdb failed: {init.stderr.strip().splitlines()[-1:] or init.returncode}")
    port = free_port()
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c max_connections=200" + \
        ("" if durable else " -c fsync=off")
    start = subprocess.run(as_user + [pg_ctl, "-D", str(data_dir), "-o", options, "-l", str(root / "log"),
                                      "-w", "-t", "60", "start"], capture_output=True, text=True, timeout=90)
    if start.returncode != 0:
        log = (root / "log").read_text()[-300:] if (root / "log").exists() else start.stderr
        raise PostgresUnavailable(f"the server did not start: {log.strip()}")
    return PostgresServer(port, data_dir, as_user, pg_ctl)


@pytest.fixture(scope="session")
def postgres():
    """One server for the session; each test takes its own database with `postgres.new_database()`."""
    root = Path(tempfile.mkdtemp(prefix="sipa-pg-"))
    os.chmod(root, 0o755)
    try:
        server = start_postgres(root / "cluster")
    except PostgresUnavailable as err:
        shutil.rmtree(root, ignore_errors=True)
        unavailable(str(err))
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
