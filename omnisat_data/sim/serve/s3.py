"""A local S3-compatible endpoint serving a world's `s3/<bucket>/<key>` files (Copernicus Data Space style
worlds keep their JPEG 2000 assets there, under `s3://eodata/...` hrefs), so that GDAL's /vsis3/ is
exercised for real: signed requests, Range GETs, the endpoint and keys taken from the environment.

The server is moto's (getmoto/moto, Apache-2.0): maintained, pure Python and pip-installable, it answers
the S3 REST API including Range requests and SigV4-signed ones, and starts in a thread from the tests.
A WSGI layer in front counts requests and bytes sent, for read amplification.
"""

from __future__ import annotations

import threading
from pathlib import Path

from .assets import Counters, free_port

KEY_ID, SECRET = "omnisat-local", "omnisat-local-secret"  # the local endpoint's own keys (not a secret)


class S3Server:
    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0):
        self.root = Path(root)  # holds one folder per bucket
        self.host, self.port = host, port or free_port(host)
        self.counters = Counters()
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def gdal_env(self) -> dict[str, str]:
        """The environment GDAL reads s3:// hrefs with against this endpoint (what a CDSE user sets with
        eodata.dataspace.copernicus.eu and their own keys)."""
        return {"AWS_S3_ENDPOINT": self.endpoint, "AWS_HTTPS": "NO", "AWS_VIRTUAL_HOSTING": "FALSE",
                "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1"}

    def _app(self):
        from moto.server import DomainDispatcherApplication, create_backend_app

        app = DomainDispatcherApplication(create_backend_app)
        counters = self.counters

        def counted(environ, start_response):
            body = app(environ, start_response)
            if environ.get("REQUEST_METHOD") != "GET":
                return body
            try:
                chunks = list(body)
            finally:  # the WSGI contract: the server closes what the app returned; we consumed it
                getattr(body, "close", lambda: None)()
            counters.add(environ.get("PATH_INFO", ""), sum(len(c) for c in chunks))
            return chunks
        return counted

    def start(self) -> S3Server:
        import boto3
        from moto.moto_server.threaded_moto_server import MotoRequestHandler
        from werkzeug.serving import make_server

        class Quiet(MotoRequestHandler):
            def log_request(self, *args) -> None:  # one line per Range GET would drown the build's output
                pass

        self._server = make_server(self.host, self.port, self._app(), threaded=True, request_handler=Quiet)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        client = boto3.client("s3", endpoint_url=f"http://{self.endpoint}", aws_access_key_id=KEY_ID,
                              aws_secret_access_key=SECRET, region_name="us-east-1")
        for bucket in sorted(p for p in self.root.iterdir() if p.is_dir()):
            client.create_bucket(Bucket=bucket.name)
            for path in sorted(p for p in bucket.rglob("*") if p.is_file()):
                client.upload_file(str(path), bucket.name, path.relative_to(bucket).as_posix())
        self.counters.reset()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
