"""A real STAC API on this machine: PostgreSQL + PostGIS + pgstac, served by stac-fastapi-pgstac.

Started and stopped by the project's own code (recipe: stac-and-coregistration spec §1.2).
PostgreSQL refuses to run as root, so as root the database runs as the `postgres` user. It listens on
127.0.0.1 with password authentication (a password generated per server, kept in the private work
folder, never printed) and on a Unix socket in that folder (mode 0700, peer authentication): no other
local user can connect. A watchdog process (watchdog.py) stops the API and the database and removes
the work folder when the process that started them dies, whatever kills it.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from .assets import PortInUse, free_port, port_is_free


class ServerError(RuntimeError):
    pass


def find_pg_bin(pg_bin: str | None = None) -> Path:
    """The PostgreSQL server binaries folder (newest under /usr/lib/postgresql unless given)."""
    candidates = [Path(pg_bin)] if pg_bin else sorted(Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin"))
    for folder in reversed(candidates):
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise ServerError(f"PostgreSQL is not installed: no initdb/pg_ctl in {pg_bin or '/usr/lib/postgresql/*/bin'} "
                      "(apt-get install postgresql-15 postgresql-15-postgis-3)")


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a missing parent package
        return False


def _check_postgis(pg_bin: Path) -> None:
    sharedir = (
        subprocess.run([str(pg_bin / "pg_config"), "--sharedir"], capture_output=True, text=True).stdout.strip()
        if (pg_bin / "pg_config").is_file()
        else f"/usr/share/postgresql/{pg_bin.parent.name}"
    )
    if not glob.glob(f"{sharedir}/extension/postgis.control"):
        raise ServerError(f"PostGIS is not installed for PostgreSQL {pg_bin.parent.name} "
                          f"(apt-get install postgresql-{pg_bin.parent.name}-postgis-3)")


class PgStacServer:
    """Start a throw-away pgstac database and a stac-fastapi-pgstac API on 127.0.0.1.

    `collections` and `items` are files to load (JSON collections, ndjson items). Use as a context
    manager; `stop()` ends the API by PID and PostgreSQL with pg_ctl, and removes the data folder.
    """

    def __init__(self, collections: list[Path], items: list[Path], port: int = 0, db_port: int = 0,
                 pg_bin: str | None = None, workdir: Path | None = None, log=print):
        missing = [m for m in ("pypgstac", "stac_fastapi.pgstac", "uvicorn") if not _importable(m)]
        if missing:  # before anything starts: nothing is left running when these are absent
            raise ServerError(f"the STAC API needs {', '.join(missing)}: pip install -e '.[server]'")
        self.pg_bin = find_pg_bin(pg_bin)
        _check_postgis(self.pg_bin)
        for p in [*collections, *items]:
            if not Path(p).is_file():
                raise ServerError(f"{p}: file to load not found")
        for label, value in (("API", port), ("database", db_port)):
            if value and not port_is_free("127.0.0.1", value):
                raise PortInUse(f"{label} port {value} is already in use on 127.0.0.1")
        self.collections, self.items = [Path(p) for p in collections], [Path(p) for p in items]
        self.port = port or free_port()
        self.db_port = db_port or free_port()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="omnisat-pgstac-"))
        self.log = log
        self._api: subprocess.Popen | None = None
        self._pg_started = False
        self._password = secrets.token_urlsafe(24)
        self._watchdog: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dsn(self) -> str:
        """The database's connection string, password included: pass it on, never print it."""
        return f"postgresql://postgres:{self._password}@127.0.0.1:{self.db_port}/postgis"

    def _as_postgres(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            args = ["runuser", "-u", "postgres", "--", *args]
        env = {**os.environ, "PGPASSWORD": self._password}
        return subprocess.run(args, capture_output=True, text=True, env=env, **kw)

    def _start_watchdog(self) -> None:
        """From here on, the group is torn down even if this process is killed."""
        cmd = [sys.executable, "-m", "omnisat_data.sim.serve.watchdog", str(self.pg_bin / "pg_ctl"),
               str(self.workdir / "data"), str(self.workdir), "1" if self._own_workdir else "0",
               "1" if os.geteuid() == 0 else "0"]
        self._watchdog = subprocess.Popen(cmd, stdin=subprocess.PIPE, text=True, start_new_session=True,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> PgStacServer:
        try:
            self._start_db()
            self._load()
            self._start_api()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_db(self) -> None:
        data = self.workdir / "data"
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o700)
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self._password + "\n")
        os.chmod(pwfile, 0o600)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.workdir, pw.pw_uid, pw.pw_gid)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        self._start_watchdog()
        r = self._as_postgres([str(self.pg_bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=peer",
                               "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8"])
        pwfile.unlink(missing_ok=True)
        if r.returncode:
            raise ServerError(
                f"initdb failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}"
            )
        opts = f"-p {self.db_port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
        r = self._as_postgres([str(self.pg_bin / "pg_ctl"), "-D", str(data), "-l", str(self.workdir / "server.log"),
                               "-o", opts, "-w", "start"])
        if r.returncode:
            raise ServerError(f"PostgreSQL did not start (see {self.workdir / 'server.log'})")
        self._pg_started = True
        r = self._as_postgres([str(self.pg_bin / "psql") if (self.pg_bin / "psql").exists() else "psql",
                               "-h", "127.0.0.1", "-p", str(self.db_port), "-U", "postgres", "-c",
                               "create database postgis"])
        if r.returncode:
            raise ServerError(f"cannot create database: {r.stderr.strip()}")

    def _load(self) -> None:
        from pypgstac.db import PgstacDB
        from pypgstac.load import Loader, Methods
        from pypgstac.migrate import Migrate

        with PgstacDB(dsn=self.dsn) as db:
            Migrate(db).run_migration()
            loader = Loader(db)
            for path in self.collections:
                loader.load_collections(str(path), Methods.upsert)
            for path in self.items:
                loader.load_items(str(path), Methods.upsert)

    def _start_api(self) -> None:
        env = {
            **os.environ,
            "PGUSER": "postgres",
            "PGPASSWORD": self._password,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.db_port),
            "PGDATABASE": "postgis",
            "POSTGRES_USER": "postgres",
            "POSTGRES_PASS": self._password,
            "POSTGRES_HOST_READER": "127.0.0.1",
            "POSTGRES_HOST_WRITER": "127.0.0.1",
            "POSTGRES_PORT": str(self.db_port),
            "POSTGRES_DBNAME": "postgis",
            "ENABLE_TRANSACTIONS_EXTENSIONS": "false",
        }
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "stac_fastapi.pgstac.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        self._api_log = open(self.workdir / "api.log", "w")
        self._api = subprocess.Popen(cmd, env=env, stdout=self._api_log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        if self._watchdog is not None and self._watchdog.stdin is not None:
            self._watchdog.stdin.write(f"pgid {self._api.pid}\n")
            self._watchdog.stdin.flush()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._api.poll() is not None:
                tail = (self.workdir / "api.log").read_text().strip().splitlines()[-1:]
                raise ServerError(f"STAC API exited with code {self._api.returncode}: {' '.join(tail)}")
            try:
                with urllib.request.urlopen(self.url + "/conformance", timeout=2) as r:
                    if json.load(r).get("conformsTo"):
                        return
            except OSError:
                time.sleep(0.2)
        raise ServerError(f"STAC API did not answer on {self.url} within 60 s")

    def stop(self) -> None:
        if self._api is not None and self._api.poll() is None:
            os.killpg(self._api.pid, signal.SIGTERM)
            try:
                self._api.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._api.pid, signal.SIGKILL)
                self._api.wait()
        if self._api is not None:
            self._api_log.close()
            self._api = None
        if self._pg_started:
            self._as_postgres([str(self.pg_bin / "pg_ctl"), "-D", str(self.workdir / "data"), "-m", "immediate",
                               "-w", "stop"])
            self._pg_started = False
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self._watchdog is not None:  # closing its pipe lets it finish (nothing is left for it to do)
            self._watchdog.stdin.close()
            try:
                self._watchdog.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
            self._watchdog = None

    def __enter__(self) -> PgStacServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
