"""A private PostgreSQL + PostGIS cluster in a data folder: the zero-set-up default.

The cluster lives in ``<root>/pgdata``, listens on 127.0.0.1 on a free port (kept in
``<root>/port`` and reused), authenticates with a generated password (``<root>/password``,
mode 0600) and holds one database, ``weijian``, with PostGIS. PostgreSQL refuses to run as
root, so when the caller is root every server command runs as the ``postgres`` system user
(``runuser``), which owns ``pgdata``.
"""

from __future__ import annotations

import fcntl
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from gis_db.errors import DatabaseUnavailableError, SystemPackageMissingError

DATABASE = "weijian"
SUPERUSER = "weijian"
SERVER_USER = "postgres"


def _pg_bindir() -> Path:
    """The newest PostgreSQL server binaries on this machine."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version_key)
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    raise SystemPackageMissingError(
        "PostgreSQL server binaries (pg_ctl, initdb) not found: install them with "
        "'apt-get install postgresql-15 postgresql-15-postgis-3', or set WEIJIAN_DATABASE_URL "
        "to an existing PostGIS server"
    )


def _version_key(path: str) -> int:
    try:
        return int(Path(path).parts[-3])
    except ValueError:
        return 0


def _check_postgis(bindir: Path) -> None:
    version = bindir.parent.name
    if not glob.glob(f"/usr/share/postgresql/{version}/extension/postgis.control"):
        raise SystemPackageMissingError(
            f"PostGIS is not installed for PostgreSQL {version}: run "
            f"'apt-get install postgresql-{version}-postgis-3' (or ./test.sh as root, which does "
            "it)"
        )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class ClusterStatus:
    """What ``weijian db status`` reports."""

    root: Path
    initialised: bool
    running: bool
    port: int | None


class EmbeddedCluster:
    """The private cluster under ``root`` (a folder; created when missing)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().absolute()
        self.pgdata = self.root / "pgdata"
        self._as_root = os.geteuid() == 0

    # -- files ---------------------------------------------------------------------------------
    @property
    def port(self) -> int | None:
        """The port recorded for this cluster, if initialised."""
        path = self.root / "port"
        return int(path.read_text().strip()) if path.is_file() else None

    @property
    def password(self) -> str:
        """The generated password of the ``postgres`` role (kept in the cluster folder)."""
        return (self.root / "password").read_text().strip()

    @property
    def initialised(self) -> bool:
        """Whether ``initdb`` has run and the password file exists."""
        return (self.pgdata / "PG_VERSION").is_file() and (self.root / "password").is_file()

    def url(self) -> str:
        """SQLAlchemy URL of the cluster's ``weijian`` database (psycopg 3 driver)."""
        if not self.initialised or self.port is None:
            raise DatabaseUnavailableError(
                f"no embedded cluster in {self.root}: run 'weijian db start' first"
            )
        return (
            f"postgresql+psycopg://{SUPERUSER}:{quote(self.password, safe='')}"
            f"@127.0.0.1:{self.port}/{DATABASE}"
        )

    # -- commands ------------------------------------------------------------------------------
    def _run(self, args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self._as_root:
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd="/", check=False)
        if check and proc.returncode != 0:
            log = self.pgdata / "postgres.log"
            tail = log.read_text(errors="replace")[-800:] if log.is_file() else ""
            raise DatabaseUnavailableError(
                f"{Path(args[0]).name} failed "
                f"(exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()} {tail}"
            )
        return proc

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def status(self) -> ClusterStatus:
        """Initialised, running, port and URL of the cluster, without starting it."""
        running = False
        if self.initialised:
            bindir = _pg_bindir()
            running = (
                self._run(
                    [str(bindir / "pg_ctl"), "status", "-D", str(self.pgdata)], check=False
                ).returncode
                == 0
            )
        return ClusterStatus(self.root, self.initialised, running, self.port)

    def _init(self, bindir: Path) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)  # a half-made cluster from an interrupted init
        self.pgdata.mkdir(mode=0o700)
        password = secrets.token_urlsafe(24)
        pwfile = self.root / ".initpw"
        pwfile.write_text(password + "\n")
        if self._as_root:
            try:
                server = pwd.getpwnam(SERVER_USER)
            except KeyError as exc:
                raise SystemPackageMissingError(
                    "running as root needs the 'postgres' system user: install postgresql-15"
                ) from exc
            if self._run(["test", "-x", str(self.root)], check=False).returncode != 0:
                raise DatabaseUnavailableError(
                    f"the 'postgres' system user cannot enter {self.root} (a parent folder is "
                    "private): as root, set WEIJIAN_DATA_DIR to a folder outside /root, e.g. "
                    "/var/lib/weijian"
                )
            for path in (self.pgdata, pwfile):
                os.chown(path, server.pw_uid, server.pw_gid)
        try:
            self._run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-instructions",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        secret = self.root / "password"
        secret.write_text(password + "\n")
        os.chmod(secret, 0o600)
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# weijian embedded cluster\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.pgdata}'\n"
                "shared_buffers = 256MB\n"
                "work_mem = 64MB\n"
                "maintenance_work_mem = 256MB\n"
                "max_wal_size = 2GB\n"
                "synchronous_commit = off\n"
            )
        (self.root / "port").write_text(f"{free_port()}\n")

    def start(self) -> str:
        """Initialise when needed, start when stopped, ensure PostGIS; return the URL."""
        bindir = _pg_bindir()
        _check_postgis(bindir)
        with self._lock():
            if not self.initialised:
                self._init(bindir)
            if not self.status().running:
                port = self.port
                if port is None or _port_in_use(port):
                    port = free_port()
                    (self.root / "port").write_text(f"{port}\n")
                self._run(
                    [
                        str(bindir / "pg_ctl"),
                        "start",
                        "-D",
                        str(self.pgdata),
                        "-w",
                        "-t",
                        "60",
                        "-l",
                        str(self.pgdata / "postgres.log"),
                        "-o",
                        f"-p {port}",
                    ]
                )
            self._ensure_database()
        return self.url()

    def stop(self) -> bool:
        """Stop the server (fast shutdown); False when it was not running."""
        if not self.initialised or not self.status().running:
            return False
        with self._lock():
            self._run(
                [str(_pg_bindir() / "pg_ctl"), "stop", "-D", str(self.pgdata), "-m", "fast", "-w"]
            )
        return True

    def _ensure_database(self) -> None:
        import psycopg

        conninfo = f"host=127.0.0.1 port={self.port} user={SUPERUSER} password='{self.password}'"
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(conninfo, dbname="postgres", autocommit=True) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{DATABASE}"')
                break
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise DatabaseUnavailableError(
                        f"embedded cluster in {self.root} started but refuses connections: {exc}"
                    ) from exc
                time.sleep(0.3)
        with psycopg.connect(conninfo, dbname=DATABASE, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
