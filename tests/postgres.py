"""A real PostgreSQL server for the test session, and a `database_url` fixture over both backends.

Registered as a pytest plugin in tests/conftest.py, so any test can ask for:

- `database_url`: a fresh, empty database, once on SQLite (a file in the test's tmp dir) and
  once on PostgreSQL (a new database on the session's server); parametrized, ids `sqlite` and
  `postgresql`. URLs are in their standard form (`postgresql://...`), as an operator writes them.
- `postgres_server`: the running server (`PostgresServer`), started on first use with Debian's
  `initdb`/`pg_ctl` in a temporary directory on a free port, and stopped at the end of the session.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user
(`runuser -u postgres --`). Without Debian's `postgresql` package (scripts/test.sh installs it)
the PostgreSQL cases are skipped with the reason.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.live import free_port

BACKENDS = ("sqlite", "postgresql")


def postgres_bin() -> Path | None:
    """The newest /usr/lib/postgresql/*/bin that has initdb (Debian's layout)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster: trust authentication on 127.0.0.1 only."""

    bindir: Path
    datadir: Path
    port: int
    as_user: list[str]
    durable: bool = False

    @property
    def url(self) -> str:
        """The maintenance database's URL (standard form)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.as_user, *args], check=check, capture_output=True,
                              text=True, timeout=120)

    @property
    def options(self) -> str:
        base = (f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 "
                "-c max_connections=200")
        # Tests need no crash safety of the server itself (it is thrown away): skip the fsyncs.
        return base if self.durable else base + " -c fsync=off -c full_page_writes=off"

    def start(self) -> None:
        self.run(str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres",
                 "--auth=trust", "--encoding=UTF8", "--no-sync")
        options = self.options
        result = self.run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-o", options,
                          "-l", str(self.datadir / "server.log"), "-w", "-t", "60", "start",
                          check=False)
        if result.returncode != 0:
            log = (self.datadir / "server.log")
            raise RuntimeError(f"pg_ctl start failed: {result.stderr}\n"
                               f"{log.read_text() if log.exists() else ''}")

    def stop(self, mode: str = "fast") -> None:
        self.run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w",
                 "stop", check=False)

    def restart(self) -> None:
        """Stop and start again on the same port (for tests of an outage)."""
        self.stop()
        self.run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-o", self.options,
                 "-l", str(self.datadir / "server.log"), "-w", "-t", "60", "start")

    def create_database(self) -> str:
        """A new empty database; its standard URL."""
        import psycopg

        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_postgres(*, durable: bool = False) -> PostgresServer:
    """Start a server in a new temporary directory (caller stops it).

    `durable=True` keeps PostgreSQL's default fsync and full-page writes (for benchmarks).
    """
    bindir = postgres_bin()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL is not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="mnist-canvas-pg-"))
    datadir = root / "data"
    datadir.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(datadir, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    server = PostgresServer(bindir=bindir, datadir=datadir, port=free_port(), as_user=as_user,
                            durable=durable)
    try:
        server.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = start_postgres()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(server.datadir.parent, ignore_errors=True)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend (see the module docstring)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.sqlite3'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database()
    try:
        yield url
    finally:
        server.drop_database(url)


@pytest.fixture(scope="session", autouse=True)
def _default_database_outside_shared_data(tmp_path_factory: pytest.TempPathFactory
                                          ) -> Iterator[None]:
    """Apps the tests start keep corrections in a session temp file, never in the MNIST dir.

    Without a URL the default database is a file in the data directory, which for tests is the
    shared MNIST directory; set it here unless the caller chose one.
    """
    if os.environ.get("MNIST_CANVAS_DATABASE_URL"):
        yield
        return
    path = tmp_path_factory.mktemp("default-db") / "mnist-canvas.sqlite3"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MNIST_CANVAS_DATABASE_URL", f"sqlite:///{path}")
        _SESSION_DEFAULT.append(f"sqlite:///{path}")
        # A server follows the registry's current version, which is the first model any
        # server registered there: servers shared by a module or the session would then
        # serve each other's models. They serve their own file unless a test turns hot
        # reload on (the hot-reload tests set the poll interval themselves).
        if not os.environ.get("MNIST_CANVAS_MODEL_POLL_SECONDS"):
            patch.setenv("MNIST_CANVAS_MODEL_POLL_SECONDS", "0")
        yield


_SESSION_DEFAULT: list[str] = []


@pytest.fixture(autouse=True)
def _default_database_per_test(tmp_path_factory: pytest.TempPathFactory,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's own apps get a fresh default database, so that nothing one test stores
    (corrections, a model version it promoted) is served to the next: every worker follows
    the registry's current version. Servers shared by a module or the session keep the
    session's file; a URL the environment chose is left alone."""
    if os.environ.get("MNIST_CANVAS_DATABASE_URL") in _SESSION_DEFAULT:
        path = tmp_path_factory.mktemp("test-db") / "mnist-canvas.sqlite3"
        monkeypatch.setenv("MNIST_CANVAS_DATABASE_URL", f"sqlite:///{path}")
