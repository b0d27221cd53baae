"""Servers start, answer, refuse bad input with one clear line, and leave nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from omnisat_data.sim.serve.assets import AssetServer, PortInUse, Shaping, port_is_free
from omnisat_data.sim.serve.pgstac import PgStacServer, ServerError, find_pg_bin


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "cli.data", *args], capture_output=True, text=True, timeout=120, **kw)


def test_range_requests(tmp_path):
    (tmp_path / "f.bin").write_bytes(bytes(range(256)) * 4)
    with AssetServer(tmp_path) as server:
        req = urllib.request.Request(f"{server.url}/f.bin", headers={"Range": "bytes=10-19"})
        with urllib.request.urlopen(req) as r:
            assert r.status == 206 and r.read() == bytes(range(10, 20))
            assert r.headers["Content-Range"] == "bytes 10-19/1024"
        req = urllib.request.Request(f"{server.url}/f.bin", headers={"Range": "bytes=-4"})
        with urllib.request.urlopen(req) as r:
            assert r.read() == bytes(range(252, 256))
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(f"{server.url}/../../etc/passwd")
        assert server.counters.requests == 2 and server.counters.bytes_sent == 14


def test_shaped_answers_wait_their_delay_and_bandwidth_and_count_requests_in_flight(tmp_path):
    """Object storage as benchmarks model it: lower bounds only (a loaded machine is slower, never faster)."""
    from concurrent.futures import ThreadPoolExecutor

    (tmp_path / "f.bin").write_bytes(bytes(200_000))
    with AssetServer(tmp_path, shaping=Shaping(delay_s=0.5)) as server:
        def get(_):
            t0 = time.perf_counter()
            with urllib.request.urlopen(urllib.request.Request(f"{server.url}/f.bin",
                                                               headers={"Range": "bytes=0-99"})) as r:
                r.read()
            return time.perf_counter() - t0

        with ThreadPoolExecutor(8) as pool:
            waits = list(pool.map(get, range(8)))
        assert min(waits) >= 0.5 and server.counters.requests == 8
        assert server.counters.peak_in_flight == 8 and server.counters.in_flight == 0  # all held at once, all answered

        server.shape(Shaping(bytes_per_s=400_000))
        server.counters.reset()
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"{server.url}/f.bin") as r:
            assert len(r.read()) == 200_000
        assert time.perf_counter() - t0 >= 0.45 and server.counters.peak_in_flight == 1  # 200 KB at 400 KB/s
    with pytest.raises(ValueError, match="delay"):
        Shaping(delay_s=-1)


def test_port_already_used_is_refused(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(PortInUse, match=f"port {port} is already in use"):
            AssetServer(tmp_path, port=port)
        with pytest.raises(PortInUse, match=f"port {port} is already in use"):
            PgStacServer([], [], port=port)
        r = _cli("stac", "serve", str(tmp_path), "--port", str(port))
        assert r.returncode == 2


def test_postgresql_missing_is_one_clear_line(tmp_path, world):
    with pytest.raises(ServerError, match="PostgreSQL is not installed"):
        find_pg_bin(str(tmp_path))
    r = _cli("stac", "serve", str(world), "--pg-bin", str(tmp_path))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "PostgreSQL is not installed" in lines[0]


def test_missing_world_is_one_clear_line(tmp_path):
    r = _cli("stac", "serve", str(tmp_path / "nope"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "world folder not found" in r.stderr
    r = _cli("world", "make", str(tmp_path), "--preset", "huge")
    assert r.returncode == 2 and "unknown world preset" in r.stderr


def test_stac_serve_command_serves_and_stops_cleanly(world):
    from omnisat_data.sim.serve.assets import free_port

    port = str(free_port())
    proc = subprocess.Popen([sys.executable, "-m", "cli.data", "stac", "serve", str(world), "--db-port", port],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        urls = json.loads(proc.stdout.readline())
        with urllib.request.urlopen(urls["stac_api"] + "/collections") as r:
            ids = {c["id"] for c in json.load(r)["collections"]}
        assert ids == {"sentinel-2-l2a", "sentinel-1-rtc", "aerial-cir-20cm", "spot-rgb-1m", "naip"}
        api_port = int(urls["stac_api"].rsplit(":", 1)[1])
        asset_port = int(urls["assets"].rsplit(":", 1)[1])
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (
        port_is_free("127.0.0.1", api_port) and port_is_free("127.0.0.1", asset_port)
    ):
        time.sleep(0.2)
    assert port_is_free("127.0.0.1", api_port) and port_is_free("127.0.0.1", asset_port)
    leftover = subprocess.run(["pgrep", "-f", f"--port {api_port}"], capture_output=True, text=True).stdout.split()
    assert leftover == []


def test_failed_start_leaves_nothing_behind(world, tmp_path):
    """A server whose items cannot load stops its database and removes its folder."""
    bad = tmp_path / "items.ndjson"
    bad.write_text('{"type": "Feature", "id": "x", "collection": "no-such-collection"}\n')
    collections = sorted((world / "stac" / "collections").glob("*.json"))
    server = PgStacServer(collections, [bad])
    with pytest.raises(Exception):  # noqa: B017 (pypgstac raises its own error for an unknown collection)
        server.start()
    assert not server.workdir.exists()
    assert port_is_free("127.0.0.1", server.db_port)
    assert os.path.exists("/proc")  # sanity: the check above ran on Linux


def _postgres_of(workdir: str) -> list[int]:
    """PIDs of postgres processes whose data folder is under `workdir`."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines()[1:] if "postgres" in line and workdir in line]


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGHUP])
def test_stac_serve_leaves_nothing_behind_however_it_ends(world, how):
    """`stac serve` killed outright or hung up on: API, database and data folder are gone within seconds;
    while it runs, the database asks a password over TCP (no trust auth) and the URL holds none."""
    import tempfile

    before = set(os.listdir(tempfile.gettempdir()))
    from omnisat_data.sim.serve.assets import free_port

    port = str(free_port())
    proc = subprocess.Popen([sys.executable, "-m", "cli.data", "stac", "serve", str(world), "--db-port", port],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        urls = json.loads(proc.stdout.readline())
        with urllib.request.urlopen(urls["stac_api"] + "/collections", timeout=10) as r:
            assert r.status == 200
        workdirs = [d for d in set(os.listdir(tempfile.gettempdir())) - before if d.startswith("omnisat-pgstac-")]
        assert len(workdirs) == 1
        workdir = os.path.join(tempfile.gettempdir(), workdirs[0])
        assert os.stat(workdir).st_mode & 0o077 == 0  # private: its socket and files are the server's alone
        psql = str(find_pg_bin() / "psql")
        refused = subprocess.run(["runuser", "-u", "postgres", "--", psql, "-h", "127.0.0.1", "-p", port, "-U",
                                  "postgres", "-w", "-c", "select 1"], capture_output=True, text=True, timeout=30,
                                 env={k: v for k, v in os.environ.items() if k != "PGPASSWORD"})
        assert refused.returncode != 0 and "password" in refused.stderr
        assert "postgres:" not in json.dumps(urls)
    finally:
        proc.send_signal(how)
        proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (_postgres_of(workdir) or os.path.exists(workdir)):
        time.sleep(0.2)
    assert not _postgres_of(workdir) and not os.path.exists(workdir)
    with pytest.raises(OSError):
        urllib.request.urlopen(urls["stac_api"] + "/collections", timeout=3)


@pytest.mark.slow
def test_asset_server_memory_stays_flat_under_concurrent_whole_file_reads(tmp_path):
    """20 clients read a 24 MB file at once: the server sends in pieces, so its peak memory grows by
    far less than 20 x 24 MB (it held each range whole: +480 MB)."""
    from concurrent.futures import ThreadPoolExecutor

    (tmp_path / "big.bin").write_bytes(os.urandom(24 << 20))
    code = ("import sys, time; from omnisat_data.sim.serve.assets import AssetServer\n"
            f"s = AssetServer({str(tmp_path)!r}).__enter__(); print(s.url, flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()

        def peak_kib() -> int:
            status = open(f"/proc/{proc.pid}/status").read()
            return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])

        base = peak_kib()

        def read(_):
            with urllib.request.urlopen(f"{url}/big.bin", timeout=60) as r:
                n = 0
                while chunk := r.read(1 << 16):
                    n += len(chunk)
                    time.sleep(0.0005)  # slow clients keep all 20 responses in flight together
                return n

        with ThreadPoolExecutor(20) as pool:
            assert list(pool.map(read, range(20))) == [24 << 20] * 20
        assert peak_kib() - base < 120 * 1024
    finally:
        proc.kill()
        proc.wait()


def test_missing_server_extras_are_named_before_anything_starts(monkeypatch):
    import omnisat_data.sim.serve.pgstac as pgstac

    monkeypatch.setattr(pgstac, "_importable", lambda module: module != "pypgstac")
    with pytest.raises(ServerError, match=r"pypgstac: pip install"):
        PgStacServer([], [])
