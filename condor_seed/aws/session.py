"""boto3 sessions and clients: the standard credential chain, retries that survive throttling.

Credentials come from wherever boto3 finds them (environment, `--profile`, SSO, instance role,
CI's OIDC web identity); nothing here reads or stores a key. `AWS_ENDPOINT_URL` (boto3's own
setting) points every client at another endpoint, which is how the tests reach the emulator.
"""
from __future__ import annotations

import re
import threading

import boto3
import botocore.config
import botocore.exceptions

from ..errors import PreflightError

RETRIES = {"mode": "adaptive", "max_attempts": 10}
REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")


def client_config(**overrides) -> botocore.config.Config:
    return botocore.config.Config(retries=dict(RETRIES), connect_timeout=10, read_timeout=60, **overrides)


class Aws:
    """One credential source, clients per (service, region), created lazily and reused."""

    def __init__(self, profile: str | None = None, session: boto3.Session | None = None):
        try:
            self.session = session or boto3.Session(profile_name=profile)
        except botocore.exceptions.ProfileNotFound:
            raise PreflightError(f"AWS profile {profile!r} not found in your AWS config") from None
        self._clients: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()  # a boto3 Session is not thread-safe; its clients are

    def client(self, service: str, region: str):
        if not REGION_RE.match(region or ""):
            raise PreflightError(f"{region!r} is not an AWS region name (like us-east-1)")
        key = (service, region)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self.session.client(service, region_name=region, config=client_config())
            return self._clients[key]

    def ec2(self, region: str):
        return self.client("ec2", region)

    def ssm(self, region: str):
        return self.client("ssm", region)

    def caller_identity(self, region: str) -> dict:
        """Fail with one clear line when there are no usable credentials."""
        try:
            return self.client("sts", region).get_caller_identity()
        except botocore.exceptions.NoCredentialsError:
            raise PreflightError(
                "no AWS credentials found: set AWS_PROFILE / --profile, run `aws sso login`, or export credentials"
            ) from None
        except botocore.exceptions.ClientError as exc:
            raise PreflightError(f"AWS rejected the credentials: {exc.response['Error'].get('Message', exc)}") from None
        except botocore.exceptions.EndpointConnectionError as exc:
            raise PreflightError(f"cannot reach AWS: {exc}") from None

    def known_regions(self) -> set[str]:
        """EC2 regions this botocore knows (offline); a newer region may still exist."""
        s = self.session
        return {r for p in s.get_available_partitions() for r in s.get_available_regions("ec2", p)}

    def default_region(self) -> str | None:
        return self.session.region_name
