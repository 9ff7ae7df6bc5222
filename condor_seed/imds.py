"""A small instance-metadata emulator: the seed's metadata service outside EC2.

It behaves like the parts of the real service the seed and HTCondor use: a session token from
``PUT /latest/api/token`` (TTL header required); GETs with that token. Token-less (IMDSv1) GETs are
refused with 401 like on an instance launched with ``HttpTokens=required``, unless ``imdsv1=True``
(``HttpTokens=optional``: what condor_annex's EC2 GAHP needs, it never sends a token).
Metadata: ``public-ipv4`` / ``public-hostname`` (404 when there is none), ``placement/region``,
``instance-id``, ``mac`` and its interface's ``vpc-id``, and with a ``role`` the instance profile's temporary credentials under
``iam/security-credentials/``. Used by `invoke validate`, the local smoke test and the tests.
"""
from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
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
        token = self.headers.get("X-aws-ec2-metadata-token")
        self.server.requests.append(("GET", self.path) if token else ("GET-v1", self.path))
        if token not in self.server.tokens and not (token is None and self.server.imdsv1):
            return self._reply(401, "IMDSv2 token required")
        value = self.server.metadata.get(self.path.removeprefix("/latest/meta-data/"))
        self._reply(200, value) if value is not None else self._reply(404)


class _Server(ThreadingHTTPServer):
    daemon_threads = True


@dataclass(frozen=True)
class RoleCredentials:
    """An instance profile's temporary credentials, as the metadata service hands them out."""
    role: str
    access_key_id: str
    secret_access_key: str
    token: str

    @classmethod
    def random(cls, role: str = "HTCondorSeedRole") -> "RoleCredentials":
        return cls(role, "ASIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30), secrets.token_urlsafe(60))

    def document(self) -> str:
        return json.dumps({"Code": "Success", "LastUpdated": "2026-01-01T00:00:00Z", "Type": "AWS-HMAC",
                           "AccessKeyId": self.access_key_id, "SecretAccessKey": self.secret_access_key,
                           "Token": self.token, "Expiration": "2099-01-01T00:00:00Z"})


class ImdsEmulator:
    """``with ImdsEmulator(public_ip="203.0.113.7") as imds: imds.url`` (public_ip=None: no public IP)."""

    def __init__(self, public_ip: str | None = "203.0.113.10", host: str = "127.0.0.1", port: int = 0,
                 instance_id: str = "i-0123456789abcdef0", public_hostname: str | None = None,
                 region: str | None = None, role: RoleCredentials | None = None, imdsv1: bool = False,
                 local_ipv4: str | None = None, vpc_id: str | None = "vpc-0123456789abcdef0",
                 mac: str = "02:00:5e:00:53:0a"):
        self._server = _Server((host, port), _Handler)
        self._server.tokens = set()
        self._server.requests = []
        self._server.imdsv1 = imdsv1
        self._server.metadata = {"instance-id": instance_id, "local-ipv4": local_ipv4 or host}
        if public_ip:
            self._server.metadata["public-ipv4"] = public_ip
        if public_hostname:
            self._server.metadata["public-hostname"] = public_hostname
        if region:
            self._server.metadata["placement/region"] = region
        if vpc_id:
            self._server.metadata["mac"] = mac
            self._server.metadata[f"network/interfaces/macs/{mac}/vpc-id"] = vpc_id
        if role:
            self._server.metadata["iam/security-credentials/"] = role.role
            self._server.metadata[f"iam/security-credentials/{role.role}"] = role.document()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def imdsv1(self) -> bool:
        """Whether token-less GETs are answered (HttpTokens=optional); can change while running."""
        return self._server.imdsv1

    @imdsv1.setter
    def imdsv1(self, allowed: bool) -> None:
        self._server.imdsv1 = allowed

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
