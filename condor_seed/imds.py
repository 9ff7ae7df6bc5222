"""A small IMDSv2 emulator on 127.0.0.1: the boot script's metadata service outside EC2.

It behaves like the parts of the real service the seed uses: a session token from
``PUT /latest/api/token`` (TTL header required), every GET needs that token (401 without it),
``/latest/meta-data/public-ipv4`` answers the configured address or 404 when there is none.
Used by `invoke validate`, the local smoke test and the tests.
"""
from __future__ import annotations

import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _reply(self, code: int, body: str = "") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:
        self.server.requests.append(("PUT", self.path))
        if self.path != "/latest/api/token":
            return self._reply(404)
        if not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self._reply(400, "missing TTL header")
        token = secrets.token_urlsafe(24)
        self.server.tokens.add(token)
        self._reply(200, token)

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path))
        if self.headers.get("X-aws-ec2-metadata-token") not in self.server.tokens:
            return self._reply(401, "IMDSv2 token required")
        value = self.server.metadata.get(self.path.removeprefix("/latest/meta-data/"))
        self._reply(200, value) if value is not None else self._reply(404)


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class ImdsEmulator:
    """``with ImdsEmulator(public_ip="203.0.113.7") as imds: imds.url`` (public_ip=None: no public IP)."""

    def __init__(self, public_ip: str | None = "203.0.113.10", host: str = "127.0.0.1", port: int = 0,
                 instance_id: str = "i-0123456789abcdef0"):
        self._server = _Server((host, port), _Handler)
        self._server.tokens = set()
        self._server.requests = []
        self._server.metadata = {"instance-id": instance_id, "local-ipv4": host}
        if public_ip:
            self._server.metadata["public-ipv4"] = public_ip
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[tuple[str, str]]:
        return list(self._server.requests)

    def start(self) -> "ImdsEmulator":
        self._thread = threading.Thread(target=self._server.serve_forever, name="imds-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "ImdsEmulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
