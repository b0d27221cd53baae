"""Serve a generated world as the cloud would: COGs over HTTP Range, items through a pgstac STAC API."""

from __future__ import annotations

import json
import tempfile
from contextlib import ExitStack
from pathlib import Path

from omnisat_data.stac.search import resolve_href

from .assets import AssetServer, Shaping
from .pgstac import PgStacServer
from .s3 import S3Server


class WorldNotFound(FileNotFoundError):
    pass


def world_files(world: Path) -> tuple[list[Path], Path]:
    """Collection files and the item file of a world folder; one clear error when it is not one."""
    world = Path(world)
    items = world / "stac" / "items.ndjson"
    if not world.is_dir():
        raise WorldNotFound(f"{world}: world folder not found (create one with `omnisat-data world make {world}`)")
    if not items.is_file():
        raise WorldNotFound(f"{world}: not a world folder (missing stac/items.ndjson)")
    return sorted((world / "stac" / "collections").glob("*.json")), items


def rewrite_items(items_file: Path, base_url: str, out: Path) -> Path:
    """Copy of the item file with relative asset hrefs turned into URLs under `base_url` (the world root)."""
    stac_url = base_url.rstrip("/") + "/" + items_file.parent.name
    lines = []
    for line in items_file.read_text().splitlines():
        if line.strip():
            item = json.loads(line)
            for asset in item["assets"].values():
                asset["href"] = resolve_href(asset["href"], stac_url)
            lines.append(json.dumps(item))
    out.write_text("\n".join(lines) + "\n")
    return out


class WorldServers:
    """Asset server over the world folder + pgstac API loaded with its items (hrefs pointing at the server);
    `shaping`: the asset server's delay and bandwidth (object storage as benchmarks model it)."""

    def __init__(self, world: Path, asset_port: int = 0, api_port: int = 0, db_port: int = 0,
                 pg_bin: str | None = None, shaping: Shaping | None = None):
        self.collections, self.items_file = world_files(world)
        self.world = Path(world)
        self.assets = AssetServer(self.world, port=asset_port, shaping=shaping)
        self._tmp = Path(tempfile.mkdtemp(prefix="omnisat-world-items-"))
        self.items_served = rewrite_items(self.items_file, self.assets.url, self._tmp / "items.ndjson")
        self.api = PgStacServer(self.collections, [self.items_served], port=api_port, db_port=db_port, pg_bin=pg_bin)
        # a Copernicus Data Space style world keeps its Sentinel-2 objects in s3/<bucket>/: a local S3 endpoint
        self.s3 = S3Server(self.world / "s3") if (self.world / "s3").is_dir() else None
        self._stack = ExitStack()

    def start(self) -> WorldServers:
        with ExitStack() as stack:
            stack.enter_context(self.assets)
            stack.enter_context(self.api)
            if self.s3 is not None:
                stack.enter_context(self.s3)
            self._stack = stack.pop_all()
        return self

    def stop(self) -> None:
        self._stack.close()
        import shutil

        shutil.rmtree(self._tmp, ignore_errors=True)

    def serve_forever(self, poll_s: float = 0.2) -> None:
        """Serve until SIGTERM, SIGINT or SIGHUP (a closed terminal stops the servers too), then stop."""
        import signal
        import time

        stop = []
        previous = {sig: signal.signal(sig, lambda *_: stop.append(True))
                    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            while not stop:
                time.sleep(poll_s)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()

    def __enter__(self) -> WorldServers:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
